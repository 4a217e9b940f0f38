//! Sources yield `StaffRecord`s. Today: CSV files (`csv`) and the drop
//! folder that feeds them (`inbox`).

pub mod csv;
pub mod inbox;
