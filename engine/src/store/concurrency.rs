//! Concurrency limits, the part both stores share: how many runs each key may still start.
//! Each store walks its queue key by key with its own SQL (see `migrations/*/0007_concurrency.sql`).

use std::collections::HashMap;

/// The room left under a task's limit while one claim walks its keys.
#[derive(Debug)]
pub(super) struct Rooms {
    max: i64,
    running: HashMap<String, i64>,
    left: usize,
}

impl Rooms {
    /// A claim of up to `left` runs, with `running` runs of each key leased already.
    pub(super) fn new(max: u32, running: Vec<(String, i64)>, left: usize) -> Rooms {
        Rooms {
            max: i64::from(max),
            running: running.into_iter().collect(),
            left,
        }
    }

    /// How many queued runs of `key` the claim may take: `None` when the key is at its limit (or
    /// the claim is full).
    pub(super) fn room(&self, key: &str) -> Option<usize> {
        let free = self.max - self.running.get(key).copied().unwrap_or(0);
        (free > 0 && self.left > 0).then(|| (free as usize).min(self.left))
    }

    /// The claim took `n` runs.
    pub(super) fn took(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n);
    }

    /// `n` runs counted by [`took`](Self::took) were not there after all.
    pub(super) fn took_back(&mut self, n: usize) {
        self.left += n;
    }

    /// Whether the claim has all it wants.
    pub(super) fn full(&self) -> bool {
        self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_has_the_room_its_limit_leaves_within_what_the_claim_wants() {
        let mut rooms = Rooms::new(2, vec![("a".into(), 2), ("b".into(), 1)], 3);
        assert_eq!(rooms.room("a"), None, "at its limit");
        assert_eq!(rooms.room("b"), Some(1));
        assert_eq!(rooms.room("c"), Some(2));
        rooms.took(2);
        assert_eq!(rooms.room("c"), Some(1), "the claim wants one more");
        rooms.took(1);
        assert!(rooms.full());
        assert_eq!(rooms.room("c"), None);
    }
}
