//! A database connection pool's use, as gauges.

use crate::Exposition;

/// How a service's database connection pool is used at this moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open, busy or idle.
    pub open: u32,
    pub idle: u32,
    /// The most the pool opens (`--database-connections`).
    pub max: u32,
}

impl PoolUse {
    /// `<connections>{state="busy"|"idle"}` and `<max>`, as
    /// `confer_room_database_connections` and `confer_room_database_connections_max`.
    /// Busy at max for long means work queues for a connection: raise the pool, or the
    /// server's `max_connections`.
    pub fn render(&self, out: &mut Exposition, connections: &str, max: &str) {
        let busy = self.open.saturating_sub(self.idle);
        out.gauge(
            connections,
            "Database connections of this replica's pool, by state.",
            &[
                (&[("state", "busy")], f64::from(busy)),
                (&[("state", "idle")], f64::from(self.idle)),
            ],
        );
        out.gauge1(
            max,
            "The most database connections this replica's pool opens.",
            f64::from(self.max),
        );
    }
}
