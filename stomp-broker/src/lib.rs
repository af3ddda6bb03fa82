//! A STOMP broker on a mio event loop (work in progress).
