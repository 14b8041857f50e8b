//! The ingest memory budget: how many body bytes requests in flight may hold in memory
//! together, and how much of it one client may hold.
//!
//! Without a share per client, one address that declared maximum-size bodies on a few
//! connections and then trickled them in held the whole budget, and every large body from
//! anyone else waited and got 503 for as long as it kept reconnecting. A client now waits
//! for room in its own share before it queues for the budget, so it can never hold, or
//! queue ahead of others for, more than its share.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::IngestError;

/// Body bytes that requests in flight may hold in memory together, as a multiple of
/// `MAX_BODY_BYTES` (and at least [`MIN_BUDGET_BYTES`]), so memory does not grow with the
/// number of concurrent senders (I3).
const BODY_BUDGET_BODIES: usize = 8;
/// The smallest budget, whatever `MAX_BODY_BYTES` is.
const MIN_BUDGET_BYTES: usize = 64 * 1024 * 1024;
/// How long a request may wait for room (in its client's share and in the budget) before
/// it gets 503.
pub(super) const BODY_BUDGET_WAIT: Duration = Duration::from_secs(10);
/// The first bytes of every body need no budget: at most `MAX_CONNECTIONS` of them are in
/// memory at once, which bounds them already. Most webhooks are this small, so they never
/// queue behind large uploads.
pub const UNBUDGETED_BODY_BYTES: usize = 64 * 1024;
/// A body of unknown length grows its reservation in steps of a quarter of what it has,
/// and at least this much.
const BUDGET_STEP_BYTES: usize = 1024 * 1024;

// A client's share (a quarter of the budget) must fit one maximum-size body.
const _: () = assert!(BODY_BUDGET_BODIES >= 4);

/// One client's share of a budget of `budget_kib`: a quarter, as for connections
/// (`config::per_client_share`), so it takes four clients to fill the budget. Since the
/// budget holds at least [`BODY_BUDGET_BODIES`] maximum-size bodies, the share holds at
/// least two.
fn per_client_body_share(budget_kib: u32) -> u32 {
    budget_kib / 4
}

/// The ingest memory budget and each client's share of it; cheap to clone. Room is counted
/// in KiB.
#[derive(Clone)]
pub(super) struct BodyBudget {
    total: Arc<Semaphore>,
    clients: Arc<ClientShares>,
    max_body_bytes: usize,
    wait: Duration,
}

impl BodyBudget {
    /// The budget for bodies of at most `max_body_bytes`; a request waits at most `wait`
    /// for room.
    pub(super) fn new(max_body_bytes: usize, wait: Duration) -> BodyBudget {
        let budget_bytes = max_body_bytes
            .saturating_mul(BODY_BUDGET_BODIES)
            .max(MIN_BUDGET_BYTES);
        let budget_kib = u32::try_from(budget_bytes / 1024).unwrap_or(u32::MAX);
        BodyBudget {
            total: Arc::new(Semaphore::new(budget_kib as usize)),
            clients: Arc::new(ClientShares {
                share_kib: per_client_body_share(budget_kib),
                held: Mutex::new(HashMap::new()),
            }),
            max_body_bytes,
            wait,
        }
    }

    /// Reserves room for a body from `client` before it is read: all of a `declared`
    /// length over [`UNBUDGETED_BODY_BYTES`], or nothing yet for an unknown length (see
    /// [`BodyReservation`]). Waits up to the budget's wait for room, then gives up with
    /// [`IngestError::Overloaded`].
    pub(super) async fn reserve(
        &self,
        declared: Option<usize>,
        client: IpAddr,
    ) -> Result<BodyReservation, IngestError> {
        let mut reservation = BodyReservation {
            budget: self.clone(),
            client,
            total: None,
            share: None,
            covers: UNBUDGETED_BODY_BYTES,
        };
        if let Some(declared) = declared.filter(|&n| n > UNBUDGETED_BODY_BYTES) {
            let bytes = declared.min(self.max_body_bytes);
            reservation.take(bytes).await?;
            reservation.covers = bytes;
        }
        Ok(reservation)
    }
}

/// Room for one body in the ingest memory budget, held until the event writer is done with
/// the body (see [`super::Ingestor::accept`]), whether or not the sender is still waiting.
///
/// A body with a declared length over [`UNBUDGETED_BODY_BYTES`] reserves all of it before
/// the first byte is read, so large uploads wait for each other without holding part of
/// the budget (no two can each hold half and wait for the rest). A body of unknown length
/// reserves in steps as it grows ([`BodyReservation::cover`]). Either way the room is
/// taken first from the client's share, then from the budget, and a body that stalls or
/// does not fill its room at the minimum rate is cut off by the read limits, which ends its
/// hold.
pub struct BodyReservation {
    budget: BodyBudget,
    /// What the sender is counted under.
    client: IpAddr,
    /// Room in the whole budget.
    total: Option<OwnedSemaphorePermit>,
    /// The same room in the client's share.
    share: Option<ShareHold>,
    /// Bytes the reservation covers, counting the unbudgeted start.
    covers: usize,
}

impl BodyReservation {
    /// Bytes the reservation covers (the unbudgeted start included): what a body buffer
    /// may hold without exceeding the budget.
    pub fn covers(&self) -> usize {
        self.covers
    }

    /// Whether the reservation holds room in the budget (beyond the unbudgeted start).
    pub fn holds_room(&self) -> bool {
        self.total.is_some()
    }

    /// Makes the reservation cover `received` bytes, waiting for room if it must grow.
    pub async fn cover(&mut self, received: usize) -> Result<(), IngestError> {
        if received <= self.covers {
            return Ok(());
        }
        let max_body_bytes = self.budget.max_body_bytes;
        let want = received
            .saturating_add((received / 4).max(BUDGET_STEP_BYTES))
            .min(max_body_bytes.max(received));
        self.take(want - self.covers).await?;
        self.covers = want;
        Ok(())
    }

    /// Takes room for `bytes` more: in the client's share first, then in the budget,
    /// waiting at most the budget's wait for both.
    async fn take(&mut self, bytes: usize) -> Result<(), IngestError> {
        let kib = u32::try_from(bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let budget = &self.budget;
        let client = self.client;
        let share = self
            .share
            .get_or_insert_with(|| ShareHold::new(&budget.clients, client));
        let total = &mut self.total;
        let take = async {
            // A client over its share waits here, outside the budget's queue: its requests
            // never stand in front of other clients' requests there.
            share.take(kib).await?;
            let permit = budget.total.clone().acquire_many_owned(kib).await?;
            match total {
                Some(total) => total.merge(permit),
                None => *total = Some(permit),
            }
            Ok::<(), tokio::sync::AcquireError>(())
        };
        tokio::time::timeout(budget.wait, take)
            .await
            .map_err(|_| IngestError::Overloaded)?
            .map_err(|_| IngestError::Overloaded)
    }
}

/// How much of the budget each client holds. A client's entry lives while any of its
/// reservations holds or waits for room in it, so the map never outgrows the requests in
/// flight.
struct ClientShares {
    share_kib: u32,
    held: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// One reservation's room in its client's share, given back on drop.
struct ShareHold {
    clients: Arc<ClientShares>,
    client: IpAddr,
    /// The client's share; `None` only while dropping.
    share: Option<Arc<Semaphore>>,
    /// KiB taken from it.
    kib: u32,
}

impl ShareHold {
    /// Joins `client`'s share, creating it when the client holds none yet.
    fn new(clients: &Arc<ClientShares>, client: IpAddr) -> ShareHold {
        let mut held = clients.held.lock().unwrap_or_else(|p| p.into_inner());
        let share = held
            .entry(client)
            .or_insert_with(|| Arc::new(Semaphore::new(clients.share_kib as usize)))
            .clone();
        ShareHold {
            clients: clients.clone(),
            client,
            share: Some(share),
            kib: 0,
        }
    }

    /// Takes `kib` more from the client's share, waiting until its other reservations
    /// leave that much.
    async fn take(&mut self, kib: u32) -> Result<(), tokio::sync::AcquireError> {
        let share = self
            .share
            .as_ref()
            .expect("BUG: a share hold has its share until dropped");
        // Counted in `self.kib` and given back in `drop`, which needs the map's lock
        // anyway; a permit would hold a second handle to the share.
        share.acquire_many(kib).await?.forget();
        self.kib += kib;
        Ok(())
    }
}

impl Drop for ShareHold {
    fn drop(&mut self) {
        let mut held = self.clients.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(share) = self.share.take() {
            share.add_permits(self.kib as usize);
        }
        // Handles are cloned and dropped only under the lock: when the map's is the last
        // one, no reservation of this client holds or waits for room.
        if held
            .get(&self.client)
            .is_some_and(|share| Arc::strong_count(share) == 1)
        {
            held.remove(&self.client);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    const MAX: usize = 10 * 1024 * 1024;

    fn client(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn clients_held(budget: &BodyBudget) -> usize {
        budget.clients.held.lock().unwrap().len()
    }

    #[test]
    fn a_share_is_a_quarter_and_fits_a_maximum_body() {
        for max in [
            1,
            1024,
            100 * 1024,
            8 * 1024 * 1024,
            MAX,
            1024 * 1024 * 1024,
        ] {
            let budget = BodyBudget::new(max, BODY_BUDGET_WAIT);
            let total = budget.total.available_permits() as u32;
            let share = budget.clients.share_kib;
            assert!(share <= total / 4, "max {max}: {share} of {total}");
            assert!(
                share as usize >= max.div_ceil(1024),
                "max {max}: a maximum body does not fit a share of {share} KiB"
            );
        }
    }

    #[tokio::test]
    async fn a_client_over_its_share_waits_while_others_get_room() {
        let budget = BodyBudget::new(MAX, BODY_BUDGET_WAIT);
        // The 80 MiB budget's quarter holds two maximum-size bodies.
        let first = budget.reserve(Some(MAX), client(1)).await.unwrap();
        let _second = budget.reserve(Some(MAX), client(1)).await.unwrap();
        assert!(first.holds_room());
        let mut third = Box::pin(budget.reserve(Some(MAX), client(1)));
        assert!((&mut third).now_or_never().is_none(), "over its share");
        // Others are not held up by it, neither by its waiting request.
        let other = budget.reserve(Some(MAX), client(2)).now_or_never();
        assert!(matches!(other, Some(Ok(_))), "another client got no room");
        // Its own room comes back when one of its bodies is done.
        drop(first);
        let third = third.now_or_never();
        assert!(matches!(third, Some(Ok(_))), "room not given back");
    }

    #[tokio::test]
    async fn a_client_over_its_share_gets_overloaded_after_the_wait() {
        let budget = BodyBudget::new(MAX, Duration::from_millis(20));
        let _held = [
            budget.reserve(Some(MAX), client(1)).await.unwrap(),
            budget.reserve(Some(MAX), client(1)).await.unwrap(),
        ];
        let over = budget.reserve(Some(MAX), client(1)).await;
        assert!(matches!(over, Err(IngestError::Overloaded)));
    }

    #[tokio::test]
    async fn a_growing_body_counts_against_its_client() {
        let budget = BodyBudget::new(MAX, Duration::from_millis(20));
        let mut growing = budget.reserve(None, client(1)).await.unwrap();
        assert!(
            !growing.holds_room(),
            "an unknown length reserves as it grows"
        );
        growing.cover(MAX).await.unwrap();
        assert!(growing.holds_room());
        let _second = budget.reserve(Some(MAX), client(1)).await.unwrap();
        let over = budget.reserve(Some(MAX), client(1)).await;
        assert!(matches!(over, Err(IngestError::Overloaded)));
    }

    #[tokio::test]
    async fn clients_are_forgotten_when_their_room_is_given_back() {
        let budget = BodyBudget::new(MAX, Duration::from_millis(20));
        let small = budget.reserve(Some(1000), client(1)).await.unwrap();
        assert_eq!(clients_held(&budget), 0, "small bodies need no share");
        let held = [
            budget.reserve(Some(MAX), client(1)).await.unwrap(),
            budget.reserve(Some(MAX), client(1)).await.unwrap(),
        ];
        // A request that gives up waiting leaves no trace either.
        let gave_up = budget.reserve(Some(MAX), client(1)).await;
        assert!(gave_up.is_err());
        let cancelled = budget.reserve(Some(MAX), client(1)).now_or_never();
        assert!(cancelled.is_none());
        assert_eq!(clients_held(&budget), 1);
        drop((small, held));
        assert_eq!(clients_held(&budget), 0);
        assert_eq!(
            budget.total.available_permits(),
            BODY_BUDGET_BODIES * MAX / 1024,
            "all room is back"
        );
    }
}
