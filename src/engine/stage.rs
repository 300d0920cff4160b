//! Work an internal subscriber puts off until its publisher's batch ends. JetStream's inboxes
//! stage what a batch brings them and hand it to the JetStream task whole when the batch is
//! flushed ([`super::deliver::Deliveries::flush`]), so that the task is woken once per batch
//! and sees all of it: it then stores the batch's messages together and sends their PubAcks in
//! one write, where taking them one by one, while the publisher's reader was still parsing the
//! rest on another thread, cost a PubAck write (and a read in the client) per message.

use std::sync::Arc;

use smallvec::SmallVec;

/// Where internal subscribers keep what publishers staged, until [`Stage::release`].
pub trait Stage: Send + Sync + std::fmt::Debug {
    /// Hands over everything staged so far, by any publisher, in the order it was staged.
    fn release(&self);
}

/// The stages one publisher's batch put something in: released when the batch is flushed,
/// or at the latest when this is dropped, so that nothing staged is ever left behind.
#[derive(Debug, Default)]
pub struct Staged(SmallVec<[Arc<dyn Stage>; 1]>);

impl Staged {
    /// Notes that `stage` holds something of this batch.
    #[inline]
    pub fn note<S: Stage + 'static>(&mut self, stage: &Arc<S>) {
        let ptr = Arc::as_ptr(stage) as *const ();
        if !self.0.iter().any(|s| Arc::as_ptr(s) as *const () == ptr) {
            self.0.push(stage.clone());
        }
    }

    /// Releases every stage noted since the last call.
    #[inline]
    pub fn release(&mut self) {
        for stage in self.0.drain(..) {
            stage.release();
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Counting(Mutex<Vec<u32>>, Mutex<u32>);

    impl Stage for Counting {
        fn release(&self) {
            *self.1.lock().unwrap() += 1;
            self.0.lock().unwrap().clear();
        }
    }

    #[test]
    fn a_stage_is_released_once_per_batch_and_when_dropped() {
        let stage = Arc::new(Counting::default());
        let mut staged = Staged::default();
        for n in 0..3 {
            stage.0.lock().unwrap().push(n);
            staged.note(&stage);
        }
        staged.release();
        assert_eq!(*stage.1.lock().unwrap(), 1, "one release for the batch");
        staged.release();
        assert_eq!(*stage.1.lock().unwrap(), 1, "nothing noted since");
        stage.0.lock().unwrap().push(9);
        staged.note(&stage);
        drop(staged);
        assert_eq!(*stage.1.lock().unwrap(), 2, "released when dropped");
        assert!(stage.0.lock().unwrap().is_empty());
    }
}
