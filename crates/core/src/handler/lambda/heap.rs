//! The heap, counted: the filter's global allocator when the `lambda` feature is on.
//!
//! Rhai's own limits bound each value (its strings, elements and properties) but not the sum
//! over variables, nor map keys, nor a map grown by `m[key] = value`. So a lambda run is also
//! held to a budget of heap bytes: [`held`] is read on every operation of the script (from the
//! engine's progress callback) and the run is stopped once it holds more than its budget over
//! what the heap held when it began. One operation allocates a bounded amount, so the heap's
//! peak stays within a few times the budget.
//!
//! The count is per thread (one VM is one thread), kept in a `Cell` that needs no allocation
//! and no destructor. It costs one addition per allocation and one subtraction per release,
//! and one more addition per allocation for [`allocations`] (what tests/no_alloc.rs reads).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static HELD: Cell<usize> = const { Cell::new(0) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// Allocations (and reallocations) this thread made, wrapping.
pub fn allocations() -> usize {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

/// Bytes allocated and not yet released by this thread. Wrapping: only differences between
/// two readings mean something (memory released by another thread than its allocator's can
/// move a thread's count either way).
pub fn held() -> usize {
    HELD.try_with(Cell::get).unwrap_or(0)
}

fn add(bytes: usize) {
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(bytes)));
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get().wrapping_add(1)));
}

fn sub(bytes: usize) {
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_sub(bytes)));
}

/// The system allocator, counted.
pub struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the count is a side
// effect that allocates nothing.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            add(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            add(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` was allocated by this allocator (so by `System`) with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            sub(layout.size());
            add(new_size);
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_follow_allocations() {
        let (before, allocations) = (held(), self::allocations());
        let block = vec![0u8; 1 << 20];
        assert!(held().wrapping_sub(before) >= 1 << 20);
        assert_eq!(self::allocations().wrapping_sub(allocations), 1);
        drop(block);
        assert!(held().wrapping_sub(before) < 1 << 10);
    }
}
