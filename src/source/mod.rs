//! Sources yield `StaffRecord`s: CSV files (`csv`) and the drop folder that
//! feeds them (`inbox`); LDAP / Active Directory (`ldap`, with the pure entry
//! and filter handling in `ldap_entry`).

pub mod csv;
pub mod inbox;
pub mod ldap;
pub mod ldap_entry;
