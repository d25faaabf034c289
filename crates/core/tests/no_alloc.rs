//! A request that matches no hook allocates nothing in the core, however many hooks there are:
//! `Runtime::observe` tests the hooks' filters on the request's fields where the host captured
//! them, and builds its event only for a hook that matches.
//!
//! Allocations are counted by the global allocator: the filter's own (handler::lambda::heap,
//! with the `lambda` feature), or, without it, a counting one of this test binary.

// Test code: a failed unwrap is a failed test (clippy.toml allows it only inside #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../benches/workload/mod.rs"]
mod workload;

use event_hooks_core::ports::ManualClock;
use workload::{NullLog, capture, runtime};

#[cfg(feature = "lambda")]
fn allocations() -> usize {
    event_hooks_core::handler::lambda::heap::allocations()
}

#[cfg(not(feature = "lambda"))]
fn allocations() -> usize {
    counting::allocations()
}

#[cfg(not(feature = "lambda"))]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    pub fn allocations() -> usize {
        ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
    }

    fn counted() {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get().wrapping_add(1)));
    }

    struct Counting;

    // SAFETY: every call is forwarded unchanged to the system allocator; counting allocates
    // nothing.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            counted();
            // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            counted();
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
            // SAFETY: `pointer` came from `System` with `layout`.
            unsafe { System.dealloc(pointer, layout) }
        }

        unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            counted();
            // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
            unsafe { System.realloc(pointer, layout, new_size) }
        }
    }

    #[global_allocator]
    static HEAP: Counting = Counting;
}

/// The allocations `work` makes on this thread.
fn counted(work: impl FnOnce()) -> usize {
    let before = allocations();
    work();
    allocations().wrapping_sub(before)
}

#[test]
fn a_request_matching_none_of_1000_hooks_allocates_nothing() {
    let runtime = runtime(1_000, false);
    let capture = capture();
    // The first request may set up what every later one reuses.
    runtime.observe(&capture, &ManualClock::at_ns(1_795_378_513_002_000_000));
    let made = counted(|| {
        for n in 0..100 {
            runtime.observe(&capture, &ManualClock::at_ns(1_795_378_513_002_000_000 + n));
        }
    });
    assert_eq!(made, 0, "allocations for 100 requests matching no hook");
    assert_eq!(runtime.counters().emitted.first(), Some(&101));
    assert!(runtime.is_idle());
}

/// crud (its `match` fails) and rate limiting (not a 429) decide without allocating too. (A
/// balancer hook is the exception: passive health checks read and may update the shared state
/// of the request's upstream host on every request, which allocates its key and its value.)
#[test]
fn crud_and_rate_limiting_hooks_allocate_nothing_either() {
    let mut config: serde_json::Value =
        serde_json::from_slice(&workload::configuration(1_000, false)).unwrap();
    let hooks = config["hooks"].as_array_mut().unwrap();
    for (source, event) in [
        ("crud", "consumers"),
        ("dao:crud", "create"),
        ("rate-limiting-advanced", "rate-limit-exceeded"),
    ] {
        hooks.push(
            serde_json::json!({"source": source, "event": event, "handler": "webhook",
                                      "config": {"url": "http://receiver:9000/x"}}),
        );
    }
    config["crud"] = serde_json::json!({"match": {"request.host": "admin.internal"}});
    let runtime = event_hooks_core::runtime::Runtime::new(
        event_hooks_core::config::parse(config.to_string().as_bytes()).unwrap(),
        7,
        Box::new(event_hooks_core::shared::Memory::default()),
        Box::new(event_hooks_core::metrics::Null),
        Box::new(NullLog),
    );
    let capture = capture();
    runtime.observe(&capture, &ManualClock::at_ns(1_795_378_513_002_000_000));
    let made =
        counted(|| runtime.observe(&capture, &ManualClock::at_ns(1_795_378_513_002_000_000)));
    assert_eq!(made, 0);
}

#[test]
fn a_matching_request_does_allocate_so_the_count_is_real() {
    let runtime = runtime(1_000, true);
    let capture = capture();
    let made =
        counted(|| runtime.observe(&capture, &ManualClock::at_ns(1_795_378_513_002_000_000)));
    assert!(made > 0);
    assert_eq!(
        runtime.outstanding(),
        1,
        "the matching hook's call is queued"
    );
}
