//! A blocking, thread-safe STOMP client on mio (work in progress).
