//! How a session of the loop changes state, and where its client socket lives meanwhile:
//! it arrives (logged in), becomes active, settles, parks, ends, or leaves for a task of
//! its own. A session arrives with its socket in tokio's reactor and moves it into the
//! loop's epoll set once it has lived a while (`SETTLE`) in a loop with more than a few
//! active sessions ([`FEW`]); a parked session's socket is always in the set, and one that
//! becomes active again takes it back to tokio's reactor if the loop is quiet (see the
//! loop's own file for why).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::entry::{into_tokio, out_of_tokio, resume, resume_sock};
use super::wake::SlotWake;
use super::{Active, Entry, FEW, Held, Looper};
use crate::client::Counted;
use crate::client::driver::Driver;
use crate::net::ClientStream;
use crate::net::stream::Looped;

/// Puts a client's socket in the loop's epoll set under `slot`.
fn register(registry: &mio::Registry, looped: &Looped, slot: usize) -> std::io::Result<()> {
    let interest = Interest::READABLE | Interest::WRITABLE;
    registry.register(&mut SourceFd(&looped.fd()), Token(slot), interest)
}

impl Looper {
    /// Whether the loop has few active sessions ([`FEW`]), counting one just put in a slot.
    pub(super) fn few_active(&self) -> bool {
        self.slots.occupied().saturating_sub(self.parked) <= FEW
    }

    /// A session that logged in runs, its socket in tokio's reactor (where login left
    /// it) until it settles (`SETTLE`).
    pub(super) fn arrive(&mut self, mut driver: Box<Driver>, stream: ClientStream, count: Counted) {
        driver.begin();
        let slot = self.slots.put(Entry {
            held: Held::Active(Box::new(Active {
                driver,
                stream,
                waker: Waker::noop().clone(),
                wake: None,
                polls: 0,
            })),
            count,
            epoch: 0,
        });
        self.step(slot, true);
    }

    /// The active session in `slot`, its socket in tokio's reactor, moves the socket into
    /// the epoll set: it lived past `SETTLE` waits while the loop is busy. (The socket is
    /// taken as ready both ways: what came before the move is read, and the set reports
    /// it too.)
    pub(super) fn settle(&mut self, slot: usize) {
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        let Held::Active(a) = std::mem::replace(&mut e.held, Held::Moving) else {
            return;
        };
        let Active {
            driver,
            stream,
            waker,
            wake,
            polls,
        } = *a;
        let stream = match out_of_tokio(stream) {
            Ok(sock) => {
                let looped = Looped::new(sock);
                match register(&self.registry, &looped, slot) {
                    Ok(()) => Ok(ClientStream::Looped(looped)),
                    // Back where it was, to try again `SETTLE` waits on.
                    Err(err) => {
                        tracing::warn!("a client's socket refused by the session loop: {err}");
                        into_tokio(looped.into_sock())
                    }
                }
            }
            Err(err) => Err(err),
        };
        match stream {
            Ok(stream) => {
                if matches!(stream, ClientStream::Looped(_)) {
                    tracing::debug!(
                        client = driver.id(),
                        "client socket moved into the session loop"
                    );
                }
                e.held = Held::Active(Box::new(Active {
                    driver,
                    stream,
                    waker,
                    wake,
                    polls,
                }));
            }
            Err(err) => {
                // Its socket is closed: the session ends here, as a lost client's does.
                tracing::warn!(client = driver.id(), "moving a client's socket: {err}");
                drop(self.slots.take(slot));
            }
        }
    }

    /// The session in `slot` becomes active (a new occupant for wake-ups: wakers of its
    /// earlier spells no longer reach it).
    pub(super) fn activate(&mut self, slot: usize) {
        self.epoch = self.epoch.wrapping_add(1);
        let epoch = self.epoch;
        let wake = Arc::new(SlotWake {
            lot: self.lot.clone(),
            slot: slot as u32,
            epoch,
            queued: AtomicBool::new(false),
        });
        let waker = Waker::from(wake.clone());
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        e.epoch = epoch;
        let held = std::mem::replace(&mut e.held, Held::Moving);
        let held = match held {
            Held::Parked(idle, looped) => {
                self.shared.parked.fetch_sub(1, Ordering::Relaxed);
                self.parked = self.parked.saturating_sub(1);
                let mut driver = (*idle).into_driver();
                let stream = if self.few_active() {
                    // Its socket leaves the epoll set for tokio's reactor.
                    let _ = self.registry.deregister(&mut SourceFd(&looped.fd()));
                    into_tokio(looped.into_sock())
                } else {
                    Ok(ClientStream::Looped(looped))
                };
                match stream {
                    Ok(stream) => {
                        driver.begin();
                        Held::Active(Box::new(Active {
                            driver,
                            stream,
                            waker,
                            wake: Some(wake),
                            polls: 0,
                        }))
                    }
                    Err(err) => {
                        // Its socket is closed: the session ends here.
                        tracing::warn!(client = driver.id(), "a parked client's socket: {err}");
                        Held::Moving
                    }
                }
            }
            Held::Active(mut a) => {
                a.waker = waker;
                a.wake = Some(wake);
                Held::Active(a)
            }
            Held::Moving => Held::Moving,
        };
        if matches!(held, Held::Moving) {
            drop(self.slots.take(slot));
        } else if let Some(e) = self.slots.get_mut(slot) {
            e.held = held;
        }
    }

    /// The session in `slot` parks where it is (its socket stays in the epoll set).
    pub(super) fn park_slot(&mut self, slot: usize) {
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        let Held::Active(a) = std::mem::replace(&mut e.held, Held::Moving) else {
            return;
        };
        let Active {
            driver,
            stream,
            waker,
            wake,
            polls,
        } = *a;
        let idle = match driver.into_idle() {
            Ok(idle) => idle,
            Err(mut driver) => {
                // Not parkable after all: active again, idle from now (it tries again
                // `park_idle_after` on).
                driver.begin();
                e.held = Held::Active(Box::new(Active {
                    driver,
                    stream,
                    waker,
                    wake,
                    polls,
                }));
                self.poll(slot);
                return;
            }
        };
        let looped = match stream {
            // Already in the epoll set.
            ClientStream::Looped(looped) => looped,
            // From tokio's reactor into the epoll set.
            stream => {
                let looped = match out_of_tokio(stream) {
                    Ok(sock) => Looped::parked(sock),
                    Err(err) => {
                        // Its socket is closed: the session ends here.
                        tracing::warn!(client = idle.id(), "parking a client: {err}");
                        drop(self.slots.take(slot));
                        return;
                    }
                };
                if let Err(err) = register(&self.registry, &looped, slot) {
                    tracing::warn!("a client's socket refused by the session loop: {err}");
                    if let Some(e) = self.slots.take(slot) {
                        resume_sock((*idle).into_driver(), looped.into_sock(), e.count);
                    }
                    return;
                }
                looped
            }
        };
        e.held = Held::Parked(idle, looped);
        self.parked += 1;
        self.shared.parked.fetch_add(1, Ordering::Relaxed);
        self.shared.parks.fetch_add(1, Ordering::Relaxed);
    }

    /// The session in `slot` ended: its last words go out now, or from a task of its own
    /// if the client does not take them at once.
    pub(super) fn close(&mut self, slot: usize, reason: String) {
        let Some(mut e) = self.slots.take(slot) else {
            return;
        };
        let Held::Active(mut a) = std::mem::replace(&mut e.held, Held::Moving) else {
            return;
        };
        if a.driver.try_end(&mut a.stream, &reason) {
            // The socket closes with the entry (which takes it out of the epoll set).
            return;
        }
        let Active { driver, stream, .. } = *a;
        let stream = match stream {
            ClientStream::Looped(looped) => {
                let _ = self.registry.deregister(&mut SourceFd(&looped.fd()));
                match into_tokio(looped.into_sock()) {
                    Ok(stream) => stream,
                    Err(err) => {
                        tracing::debug!("a closing client's socket: {err}");
                        return;
                    }
                }
            }
            stream => stream,
        };
        let count = e.count;
        tokio::spawn(async move {
            driver.end(stream, reason).await;
            drop(count);
        });
    }

    /// A session leaves the loop for a task of its own.
    fn give_task(&mut self, e: Entry) {
        let Entry { held, count, .. } = e;
        let (driver, looped) = match held {
            Held::Active(a) => {
                let Active { driver, stream, .. } = *a;
                match stream {
                    ClientStream::Looped(looped) => (driver, looped),
                    stream => return resume(driver, stream, count),
                }
            }
            Held::Parked(idle, looped) => {
                self.shared.parked.fetch_sub(1, Ordering::Relaxed);
                self.parked = self.parked.saturating_sub(1);
                ((*idle).into_driver(), looped)
            }
            Held::Moving => return,
        };
        let _ = self.registry.deregister(&mut SourceFd(&looped.fd()));
        resume_sock(driver, looped.into_sock(), count);
    }

    /// Every session of a loop whose epoll set failed gets a task of its own.
    pub(super) fn evacuate(&mut self) {
        let arrivals = {
            let mut inbox = self.lot.inbox();
            inbox.closed = true;
            std::mem::take(&mut inbox.arrivals)
        };
        for (driver, stream, count) in arrivals {
            resume(driver, stream, count);
        }
        for slot in 0..self.slots.list.len() {
            if let Some(e) = self.slots.take(slot) {
                self.give_task(e);
            }
        }
    }
}
