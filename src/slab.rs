//! Giving back what a burst left in a slab: a `Vec` of slots whose free ones are listed by index
//! in a second `Vec` (the deadline wheel's slots, the wake-up lists, the parked connections).
//!
//! A slab grows to its peak and, without this, stays there: after a burst of 9,000 connections
//! that then idle, a few hundred KiB of slots nobody uses. `trim` drops the free slots at its end
//! and the capacity neither `Vec` needs, and orders the free list so that new entries take the
//! lowest indices: what is armed later leaves the end free for the next trim.
//!
//! Owns: only the shape of the two `Vec`s it is given. Must never: move or drop a slot in use
//! (only free slots after the last used one go), or run on the request path (it is O(slots);
//! the callers run it once a burst has passed).

use std::cell::RefCell;

/// Trims `slots` and `free` (`index` turns an entry of `free` into a slot index): free slots at
/// the end are dropped, and capacity beyond twice what is left (and beyond `KEEP`) is freed.
pub fn trim<T, I: Copy + Ord>(slots: &mut Vec<T>, free: &mut Vec<I>, index: impl Fn(I) -> usize) {
    let mut is_free = vec![false; slots.len()];
    for &i in free.iter() {
        if let Some(f) = is_free.get_mut(index(i)) {
            *f = true;
        }
    }
    while is_free.last() == Some(&true) {
        is_free.pop();
        slots.pop();
    }
    free.retain(|&i| index(i) < slots.len());
    // Highest first: `pop` hands out the lowest free index.
    free.sort_unstable_by(|a, b| b.cmp(a));
    shrink(slots, KEEP);
    shrink(free, KEEP);
}

/// `trim` for a slab kept in two `RefCell`s, its free list by `usize` index.
pub fn trim_cells<T>(slots: &RefCell<Vec<T>>, free: &RefCell<Vec<usize>>) {
    trim(&mut slots.borrow_mut(), &mut free.borrow_mut(), |i| i);
}

/// Capacity a slab keeps whatever its length: a quiet core's does not reallocate at once.
const KEEP: usize = 64;

/// Frees the capacity of `v` beyond twice its length (and beyond `keep`).
pub fn shrink<T>(v: &mut Vec<T>, keep: usize) {
    let want = (v.len() * 2).max(keep);
    if v.capacity() > want {
        v.shrink_to(want);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_free_slots_at_the_end_go_and_the_lowest_free_index_comes_next() {
        let mut slots: Vec<u32> = (0..1000).collect();
        // Free: 3, 500 and everything from 900 on; 899 is in use.
        let mut free: Vec<usize> = vec![3, 500];
        free.extend(900..1000);
        trim(&mut slots, &mut free, |i| i);
        assert_eq!(slots.len(), 900);
        assert_eq!(slots[899], 899, "the slots kept are untouched");
        assert_eq!(free, vec![500, 3]);
        assert_eq!(free.pop(), Some(3));
    }

    #[test]
    fn a_slab_left_empty_by_a_burst_gives_its_capacity_back() {
        let mut slots: Vec<u64> = (0..100_000).collect();
        let mut free: Vec<u32> = (0..100_000).rev().collect();
        trim(&mut slots, &mut free, |i| i as usize);
        assert!(slots.is_empty() && free.is_empty());
        assert!(slots.capacity() <= KEEP && free.capacity() <= KEEP);
    }

    #[test]
    fn a_full_slab_keeps_everything() {
        let mut slots: Vec<u8> = vec![7; 5000];
        let mut free: Vec<usize> = Vec::with_capacity(10_000);
        trim(&mut slots, &mut free, |i| i);
        assert_eq!(slots.len(), 5000);
        assert!(free.capacity() <= KEEP, "the free list's capacity goes");
    }
}
