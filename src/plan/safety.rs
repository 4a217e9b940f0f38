//! Billable impact and the safety thresholds: a plan that would disable or
//! bill more than the limits allow is refused whole.

use super::index::Index;
use super::{Action, Billable};
use crate::config::Limits;
use crate::model::Status;
use serde::{Deserialize, Serialize};

/// What the safety thresholds look at, counted as the plan's actions are
/// made: billable impact and disables.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Tally {
    pub(super) billable: Billable,
    pub(super) disables: u64,
}

impl Tally {
    pub(super) fn add(&mut self, a: &Action, owned: &Index<'_>) {
        let b = &mut self.billable;
        match a {
            Action::Create { fields, .. } => {
                b.devices += u64::from(fields.device.is_some());
                b.call_center_seats += u64::from(fields.scope.is_billable());
            }
            Action::Update {
                fields,
                add_device,
                source_id,
                ..
            }
            | Action::Reenable {
                fields,
                add_device,
                source_id,
                ..
            } => {
                b.devices += u64::from(*add_device);
                let was_billed = owned
                    .get(source_id)
                    .is_some_and(|u| u.status == Status::Active && u.scope().is_billable());
                b.call_center_seats += u64::from(fields.scope.is_billable() && !was_billed);
            }
            Action::Disable { .. } => self.disables += 1,
            _ => {}
        }
    }
}

/// Why a safety threshold refused a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "threshold", rename_all = "snake_case")]
pub enum Refusal {
    /// More disables than `limits.max_disable`.
    MaxDisable { disables: u64, limit: u64 },
    /// More disables, as a share of the source's active users, than
    /// `limits.max_disable_percent`.
    MaxDisablePercent {
        disables: u64,
        active: u64,
        limit: u32,
    },
    /// More new devices and call-center seats than `limits.max_billable`.
    MaxBillable {
        devices: u64,
        call_center_seats: u64,
        limit: u64,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Refusal::MaxDisable { disables, limit } => write!(
                f,
                "the run would disable {disables} users, more than limits.max_disable = {limit}"
            ),
            Refusal::MaxDisablePercent {
                disables,
                active,
                limit,
            } => {
                let pct = disables as f64 * 100.0 / active.max(1) as f64;
                write!(
                    f,
                    "the run would disable {disables} of {active} active users ({pct:.1}%), more than limits.max_disable_percent = {limit}%"
                )
            }
            Refusal::MaxBillable {
                devices,
                call_center_seats,
                limit,
            } => write!(
                f,
                "the run would add {devices} devices and {call_center_seats} call-center seats ({} billable), more than limits.max_billable = {limit}",
                devices + call_center_seats
            ),
        }
    }
}

pub(super) fn safety_verdict(t: &Tally, active_owned: u64, limits: &Limits) -> Option<Refusal> {
    let (disables, billable) = (t.disables, t.billable);
    if disables > limits.max_disable {
        return Some(Refusal::MaxDisable {
            disables,
            limit: limits.max_disable,
        });
    }
    if disables > 0 && active_owned > 0 {
        let pct = disables as f64 * 100.0 / active_owned as f64;
        if pct > f64::from(limits.max_disable_percent) {
            return Some(Refusal::MaxDisablePercent {
                disables,
                active: active_owned,
                limit: limits.max_disable_percent,
            });
        }
    }
    let total = billable.devices + billable.call_center_seats;
    if total > limits.max_billable {
        return Some(Refusal::MaxBillable {
            devices: billable.devices,
            call_center_seats: billable.call_center_seats,
            limit: limits.max_billable,
        });
    }
    None
}
