//! Sources yield `StaffRecord`s: CSV files (`csv`) and the drop folder that
//! feeds them (`inbox`); LDAP / Active Directory (`ldap`, with the pure entry
//! and filter handling in `ldap_entry`).

pub mod csv;
pub mod inbox;
pub mod ldap;
pub mod ldap_entry;

use crate::mapping::Mapper;
use crate::model::StaffRecord;

/// Where a source hands its records, one by one as it reads them: a run
/// maps each at once (a [`Mapper`]) instead of holding them all.
pub trait RecordSink {
    /// At most `n` more records are coming (a CSV file once decoded).
    fn expect(&mut self, _n: usize) {}
    fn record(&mut self, r: StaffRecord);
}

/// Collects the records (tests, `check-config`).
impl RecordSink for Vec<StaffRecord> {
    fn expect(&mut self, n: usize) {
        self.reserve(n);
    }

    fn record(&mut self, r: StaffRecord) {
        self.push(r);
    }
}

impl RecordSink for Mapper {
    fn expect(&mut self, n: usize) {
        self.reserve(n);
    }

    fn record(&mut self, r: StaffRecord) {
        self.push(r);
    }
}
