//! Harness for the end-to-end suites: start Confer in-process on loopback ports, drive
//! headless Chromium through chromedriver, speak signalling over a real WebSocket.

pub mod audio;
pub mod browser;
pub mod room;
pub mod server;
pub mod signal;
pub mod video;
