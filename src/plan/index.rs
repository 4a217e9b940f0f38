//! The store's users found by extension or by source id. A run holds two
//! such indexes over every user of its domain: as `HashMap<&str,
//! &StoredUser>`s they came to about 50 MB each at 1,000,000 users (a
//! 24-byte pair per bucket); here a bucket is the user's 4-byte position in
//! the loaded slice, and the key is read from the user itself.

use crate::model::StoredUser;
use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use std::hash::BuildHasher;

/// What a user is found by.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key<'a> {
    Extension,
    /// The source id of this source's users (others have none here).
    SourceIdOf(&'a str),
}

impl Key<'_> {
    fn of<'u>(&self, u: &'u StoredUser) -> Option<&'u str> {
        match self {
            Key::Extension => Some(u.extension()),
            Key::SourceIdOf(source) => match u.source_and_id() {
                (Some(s), id) if s == *source => id,
                _ => None,
            },
        }
    }
}

pub(super) struct Index<'a> {
    users: &'a [StoredUser],
    key: Key<'a>,
    table: HashTable<u32>,
    hasher: RandomState,
}

impl<'a> Index<'a> {
    /// A later user with the same key replaces an earlier one.
    pub(super) fn new(users: &'a [StoredUser], key: Key<'a>) -> Index<'a> {
        let hasher = RandomState::default();
        let mut table = HashTable::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            let (Some(k), Ok(i)) = (key.of(u), u32::try_from(i)) else {
                continue;
            };
            let same = |j: &u32| key_at(users, key, *j) == Some(k);
            let rehash = |j: &u32| hasher.hash_one(key_at(users, key, *j).unwrap_or_default());
            match table.entry(hasher.hash_one(k), same, rehash) {
                Entry::Occupied(mut e) => *e.get_mut() = i,
                Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
        }
        Index {
            users,
            key,
            table,
            hasher,
        }
    }

    pub(super) fn get(&self, k: &str) -> Option<&'a StoredUser> {
        self.find(k).map(|(_, u)| u)
    }

    /// The user and its position in the loaded slice.
    pub(super) fn find(&self, k: &str) -> Option<(usize, &'a StoredUser)> {
        let (users, key) = (self.users, self.key);
        let found = self.table.find(self.hasher.hash_one(k), |j| {
            key_at(users, key, *j) == Some(k)
        })?;
        let i = *found as usize;
        Some((i, users.get(i)?))
    }

    /// The users found, in no order.
    pub(super) fn values(&self) -> impl Iterator<Item = &'a StoredUser> + '_ {
        self.entries().map(|(_, u)| u)
    }

    /// The users found with their positions, in no order.
    pub(super) fn entries(&self) -> impl Iterator<Item = (usize, &'a StoredUser)> + '_ {
        let users = self.users;
        self.table.iter().filter_map(move |j| {
            let i = *j as usize;
            Some((i, users.get(i)?))
        })
    }

    /// The users found with their positions, in id order: the loaded
    /// slice's own order when it is in id order (the store loads it so),
    /// where sorting them took 16 MB at the end of a 1,000,000-user run;
    /// sorted otherwise.
    pub(super) fn by_id(&self) -> impl Iterator<Item = (usize, &'a StoredUser)> + '_ {
        let users = self.users;
        let in_order = users.is_sorted_by_key(|u| u.id);
        let mut sorted: Vec<(i64, u32)> = Vec::new();
        if !in_order {
            let entries = self.entries();
            sorted.extend(entries.filter_map(|(i, u)| Some((u.id, u32::try_from(i).ok()?))));
            sorted.sort_unstable();
        }
        let found_here = move |(i, u): (usize, &'a StoredUser)| {
            let k = self.key.of(u)?;
            (self.find(k)?.0 == i).then_some((i, u))
        };
        let slice = in_order.then(|| users.iter().enumerate().filter_map(found_here));
        let sorted = sorted
            .into_iter()
            .filter_map(move |(_, i)| Some((i as usize, users.get(i as usize)?)));
        slice.into_iter().flatten().chain(sorted)
    }
}

fn key_at<'u>(users: &'u [StoredUser], key: Key<'_>, j: u32) -> Option<&'u str> {
    users.get(j as usize).and_then(|u| key.of(u))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Status;

    fn user(id: i64, ext: &str, source: Option<&str>, sid: &str) -> StoredUser {
        let f = crate::plan::tests::fields("A");
        StoredUser::new(
            id,
            ext,
            (source, source.map(|_| sid)),
            Status::Active,
            None,
            &f,
        )
    }

    #[test]
    fn finds_by_extension_and_by_this_sources_ids_only() {
        let users = vec![
            user(1, "1000", Some("hr"), "E1"),
            user(2, "1001", Some("ad"), "E2"),
            user(3, "1002", None, "x"),
            user(4, "1003", Some("hr"), "E4"),
        ];
        let by_ext = Index::new(&users, Key::Extension);
        let owned = Index::new(&users, Key::SourceIdOf("hr"));
        assert_eq!(by_ext.get("1002").map(|u| u.id), Some(3));
        assert!(by_ext.get("1001").is_some() && by_ext.get("1004").is_none());
        assert_eq!(owned.get("E4").map(|u| u.id), Some(4));
        assert!(owned.get("E2").is_none(), "another source's user");
        let mut ids: Vec<i64> = owned.values().map(|u| u.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [1, 4]);
        let in_order: Vec<(usize, i64)> = owned.by_id().map(|(i, u)| (i, u.id)).collect();
        assert_eq!(in_order, [(0, 1), (3, 4)]);
        // Out of id order, and a later user with the same key in place of
        // an earlier one: still in id order, each found once.
        let shuffled = vec![
            user(9, "1000", Some("hr"), "E1"),
            user(3, "1001", Some("hr"), "E3"),
            user(5, "1002", Some("hr"), "E1"),
        ];
        let owned = Index::new(&shuffled, Key::SourceIdOf("hr"));
        let ids: Vec<(usize, i64)> = owned.by_id().map(|(i, u)| (i, u.id)).collect();
        assert_eq!(ids, [(1, 3), (2, 5)]);
        let sorted = vec![
            shuffled[1].clone(),
            shuffled[2].clone(),
            shuffled[0].clone(),
        ];
        let owned = Index::new(&sorted, Key::SourceIdOf("hr"));
        let ids: Vec<(usize, i64)> = owned.by_id().map(|(i, u)| (i, u.id)).collect();
        assert_eq!(ids, [(0, 3), (2, 9)], "in slice order, the later E1 found");
        // Many users: every one found, none invented.
        let many: Vec<StoredUser> = (0..5000)
            .map(|i| user(i, &format!("{}", 10_000 + i), Some("hr"), &format!("S{i}")))
            .collect();
        let owned = Index::new(&many, Key::SourceIdOf("hr"));
        assert!((0..5000).all(|i| owned.get(&format!("S{i}")).map(|u| u.id) == Some(i)));
        assert!(owned.get("S5000").is_none());
        assert_eq!(owned.values().count(), 5000);
    }
}
