//! [`Notice`]: how an event file's writer tells whoever submitted a write that it is
//! committed (or why not).
//!
//! A notice carries data, not code: a message to send over the submitter's own channel, a
//! waiter to wake, a value to keep until the write is done with. So nothing of the
//! submitter runs on the writer thread except those sends, and a slow receiver of messages
//! is the submitter's business (see `Notice::message`).

use std::any::Any;

use crossbeam_channel::Sender;

use super::StoreError;

/// A write's outcome as a message carries it: the error's text on failure.
pub type Committed = Result<(), String>;

/// What the writer does when a write is committed or has failed. Fired exactly once: with
/// the commit's outcome, with the reason the write was refused, or, if it is dropped
/// unfired (the writer went away), with [`StoreError::Closed`].
#[derive(Default)]
#[must_use = "a notice fires when it is dropped"]
pub struct Notice {
    message: Option<Box<dyn FnOnce(Committed) + Send>>,
    reply: Option<Reply>,
    held: Option<Box<dyn Any + Send>>,
}

enum Reply {
    Task(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
    Thread(std::sync::mpsc::SyncSender<Result<(), StoreError>>),
}

impl Notice {
    /// Sends `(message, outcome)` over `tx`. The send waits while the channel is full, so
    /// its receiver must never wait for a writer itself.
    pub fn message<M: Send + 'static>(tx: &Sender<(M, Committed)>, message: M) -> Notice {
        let tx = tx.clone();
        Notice {
            message: Some(Box::new(move |outcome| {
                // Only fails once the receiving side is gone (shutdown): nobody to tell.
                let _gone = tx.send((message, outcome));
            })),
            reply: None,
            held: None,
        }
    }

    /// Also wakes `tx` with the outcome, after the message is sent.
    pub fn and_reply(mut self, tx: tokio::sync::oneshot::Sender<Result<(), StoreError>>) -> Self {
        self.reply = Some(Reply::Task(tx));
        self
    }

    /// Keeps `value` until the write is done with (after the message and the reply): a
    /// memory reservation for the write's body, say.
    pub fn holding(mut self, value: impl Send + 'static) -> Self {
        self.held = Some(Box::new(value));
        self
    }

    pub(super) fn and_wake(
        mut self,
        tx: std::sync::mpsc::SyncSender<Result<(), StoreError>>,
    ) -> Self {
        self.reply = Some(Reply::Thread(tx));
        self
    }

    /// Fires with `outcome`.
    pub(super) fn complete(mut self, outcome: Result<(), StoreError>) {
        self.fire(outcome);
    }

    fn fire(&mut self, outcome: Result<(), StoreError>) {
        if let Some(send) = self.message.take() {
            send(outcome.as_ref().map(|_| ()).map_err(ToString::to_string));
        }
        // A waiter only goes away if it stopped waiting (a client that hung up).
        match self.reply.take() {
            Some(Reply::Task(tx)) => drop(tx.send(outcome)),
            Some(Reply::Thread(tx)) => drop(tx.send(outcome)),
            None => {}
        }
        self.held.take();
    }
}

impl Drop for Notice {
    fn drop(&mut self) {
        if self.message.is_some() || self.reply.is_some() || self.held.is_some() {
            self.fire(Err(StoreError::Closed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_fires_once_message_first_then_reply_then_drops_what_it_holds() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (reply_tx, mut reply_rx) = tokio::sync::oneshot::channel();
        let held = std::sync::Arc::new(());
        let notice = Notice::message(&tx, 7u8)
            .and_reply(reply_tx)
            .holding(held.clone());
        assert_eq!(std::sync::Arc::strong_count(&held), 2);
        notice.complete(Ok(()));
        assert_eq!(rx.try_recv().unwrap(), (7, Ok(())));
        assert!(matches!(reply_rx.try_recv(), Ok(Ok(()))));
        assert_eq!(std::sync::Arc::strong_count(&held), 1);
        assert!(rx.try_recv().is_err(), "fired once");
    }

    #[test]
    fn a_dropped_notice_reports_the_writer_closed() {
        let (tx, rx) = crossbeam_channel::unbounded();
        drop(Notice::message(&tx, "m"));
        let (m, outcome) = rx.try_recv().unwrap();
        assert_eq!(m, "m");
        assert_eq!(outcome, Err(StoreError::Closed.to_string()));
    }
}
