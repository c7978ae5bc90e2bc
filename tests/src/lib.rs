//! Harness for the end-to-end suites: start Confer in-process on loopback ports, drive
//! headless Chromium through chromedriver, speak signalling over a real WebSocket, and
//! bring up real PostgreSQL databases and Redis servers.

pub mod audio;
pub mod backing;
pub mod browser;
pub mod checkers;
pub mod joins;
pub mod late_pushes;
pub mod lossy_link;
pub mod pki;
pub mod rejoins;
pub mod replicas;
pub mod room;
pub mod server;
pub mod signal;
pub mod sip;
pub mod softphone;
pub mod split;
pub mod tenant;
pub mod two_sfus;
pub mod video;
