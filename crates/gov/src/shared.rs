//! Process-wide tables of values many ops repeat (authors, collective ids, template ids), so
//! that a log of a million ops holds one copy of each rather than one per op.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Mutex, OnceLock, PoisonError};

/// A table of shared values, emptied when it reaches its capacity (a value then read again is
/// copied once more; nothing else changes).
pub(crate) struct Table<T> {
    values: OnceLock<Mutex<HashSet<T>>>,
    capacity: usize,
}

impl<T: Hash + Eq + Clone> Table<T> {
    pub(crate) const fn new(capacity: usize) -> Table<T> {
        Table {
            values: OnceLock::new(),
            capacity,
        }
    }

    /// The value equal to `key` read before, or the one `make` builds (then remembered).
    pub(crate) fn get_or_make<Q, E>(
        &self,
        key: &Q,
        make: impl FnOnce(&Q) -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut values = self
            .values
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = values.get(key) {
            return Ok(shared.clone());
        }
        let value = make(key)?;
        if values.len() >= self.capacity {
            values.clear();
        }
        values.insert(value.clone());
        Ok(value)
    }

    /// [`Table::get_or_make`] for a `make` that cannot fail.
    pub(crate) fn get_or_insert<Q>(&self, key: &Q, make: impl FnOnce(&Q) -> T) -> T
    where
        T: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        match self.get_or_make(key, |k| Ok::<T, std::convert::Infallible>(make(k))) {
            Ok(value) => value,
            Err(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::Table;

    /// Equal values come back as one copy; a full table starts again and still answers
    /// with equal values; a value `make` refuses is not remembered.
    #[test]
    fn equal_values_share_one_copy() {
        let table: Table<Arc<str>> = Table::new(3);
        let make = |s: &str| Ok::<_, ()>(Arc::from(s));
        let a = table.get_or_make("a", make).unwrap();
        assert!(Arc::ptr_eq(&a, &table.get_or_make("a", make).unwrap()));
        for s in ["b", "c", "d"] {
            table.get_or_make(s, make).unwrap();
        }
        let again = table.get_or_make("a", make).unwrap();
        assert_eq!(again, a);
        assert!(!Arc::ptr_eq(&again, &a), "the full table was emptied");
        assert_eq!(table.get_or_make("bad", |_| Err(())), Err(()));
        let made = table.get_or_make("bad", make).unwrap();
        assert_eq!(&*made, "bad");
    }
}
