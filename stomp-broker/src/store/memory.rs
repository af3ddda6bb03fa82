//! The memory store: the router's memory is the only copy.

use std::io;

use super::{Recovery, Store, StoredMessage};

/// Keeps nothing beyond the router's own memory: messages die with the broker.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn recover(&mut self) -> io::Result<Recovery> {
        Ok(Recovery::default())
    }
    fn append(&mut self, _message: &StoredMessage) -> io::Result<()> {
        Ok(())
    }
    fn remove(&mut self, _queue: &str, _seq: u64) -> io::Result<()> {
        Ok(())
    }
    fn commit(&mut self) -> io::Result<u64> {
        Ok(0)
    }
}
