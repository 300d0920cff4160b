//! Liveness, as every kind of connection keeps it: a PING when the peer has been quiet for the
//! interval (the first one always), `ping_max` unanswered PINGs make the connection stale, and
//! the PONG that answers the oldest outstanding PING gives the round-trip time.

use std::time::Duration;

use tokio::time::Instant;

use crate::proto::error::ProtocolError;

/// One connection's PING state.
#[derive(Debug)]
pub struct Liveness {
    /// PINGs sent and not answered.
    pings_out: u32,
    /// When the oldest unanswered PING went out (for the RTT).
    ping_sent: Option<Instant>,
    /// When the peer last sent anything.
    pub last_in: Instant,
    /// The first PING went out; later ones are skipped while the peer is active.
    pinged: bool,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            pings_out: 0,
            ping_sent: None,
            last_in: Instant::now(),
            pinged: false,
        }
    }
}

impl Liveness {
    /// What the PING timer does now: `Ok(true)` sends a PING, `Ok(false)` skips it because the
    /// peer was heard from within `interval`, and an error means `max` PINGs went unanswered.
    pub fn on_timer(
        &mut self,
        interval: Duration,
        max: u32,
        desc: &str,
    ) -> Result<bool, ProtocolError> {
        if self.pinged && self.last_in.elapsed() < interval {
            tracing::debug!("{desc} - Delaying PING due to remote client data or ping");
            return Ok(false);
        }
        self.pinged = true;
        if self.pings_out + 1 > max {
            tracing::debug!("{desc} - Stale Client Connection - Closing");
            return Err(ProtocolError::StaleConnection);
        }
        self.pings_out += 1;
        self.ping_sent.get_or_insert_with(Instant::now);
        Ok(true)
    }

    /// A PONG arrived: nothing is outstanding any more. Returns the round-trip time of the
    /// PING it answers.
    pub fn on_pong(&mut self) -> Option<Duration> {
        self.pings_out = 0;
        self.ping_sent.take().map(|sent| sent.elapsed())
    }
}
