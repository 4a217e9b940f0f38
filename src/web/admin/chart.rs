//! The run-history chart of the console, drawn on the server as SVG (no
//! script, no third-party assets; the page's CSP allows it as markup).
//!
//! One group per day of the last `days` days: users created, updated and
//! disabled by that day's runs as stacked bars, and the day's refused runs
//! as a red marker with their count. A day, not a run, per bar: a source
//! synced every 15 minutes makes 2,880 runs a month, which no bar chart
//! shows readably; each run stays one click away in the table below it.

use std::fmt::Write;

/// What one run contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPoint {
    pub started_at: i64,
    pub created: i64,
    pub updated: i64,
    pub disabled: i64,
    pub refused: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Day {
    created: i64,
    updated: i64,
    disabled: i64,
    refused: i64,
}

const W: f64 = 720.0;
const H: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 48.0;

pub const CREATED: &str = "#2e7d32";
pub const UPDATED: &str = "#1f5fbf";
pub const DISABLED: &str = "#e07b00";
pub const REFUSED: &str = "#b00020";

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A round step (1, 2 or 5 × 10^k) giving at most five ticks up to `max`.
fn tick_step(max: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if max / s.max(1) <= 5 {
                return s.max(1);
            }
        }
        step = step.saturating_mul(10);
    }
}

fn buckets(runs: &[RunPoint], now: i64, days: i64) -> (i64, Vec<Day>) {
    let days = days.max(1);
    let first = now.div_euclid(86_400) * 86_400 - (days - 1) * 86_400;
    let mut out = vec![Day::default(); days as usize];
    for r in runs {
        let i = (r.started_at - first).div_euclid(86_400);
        let Some(d) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) else {
            continue;
        };
        d.created += r.created.max(0);
        d.updated += r.updated.max(0);
        d.disabled += r.disabled.max(0);
        d.refused += i64::from(r.refused);
    }
    (first, out)
}

/// `MM-DD` of a day's start (UTC).
fn month_day(t: i64) -> String {
    let s = crate::time::format_rfc3339(t);
    s.get(5..10).unwrap_or("").to_string()
}

/// The chart for one source; `id` makes its title referable.
pub fn run_history_svg(id: &str, title: &str, runs: &[RunPoint], now: i64, days: i64) -> String {
    let (first, days) = buckets(runs, now, days);
    let n = days.len() as f64;
    let max = days
        .iter()
        .map(|d| d.created + d.updated + d.disabled)
        .max()
        .unwrap_or(0);
    let step = tick_step(max.max(1));
    let top = ((max.max(1) + step - 1) / step) * step;
    let plot_h = H - TOP - BOTTOM;
    let plot_w = W - LEFT - RIGHT;
    let y = |v: i64| TOP + plot_h - (v as f64 / top as f64) * plot_h;
    let slot = plot_w / n;
    let bar = (slot * 0.7).max(1.0);
    let total: (i64, i64, i64, i64) = days.iter().fold((0, 0, 0, 0), |a, d| {
        (
            a.0 + d.created,
            a.1 + d.updated,
            a.2 + d.disabled,
            a.3 + d.refused,
        )
    });
    let id = escape(id);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">Last {} days: {} created, {} updated, {} disabled, {} refused runs.</desc>"#,
        escape(title),
        days.len(),
        total.0,
        total.1,
        total.2,
        total.3
    );
    // Legend.
    let legend = [
        (CREATED, "created"),
        (UPDATED, "updated"),
        (DISABLED, "disabled"),
        (REFUSED, "refused runs"),
    ];
    let mut lx = LEFT;
    for (color, label) in legend {
        if color == REFUSED {
            let _ = write!(
                s,
                r#"<circle cx="{}" cy="16" r="5" fill="{color}"/>"#,
                lx + 5.0
            );
        } else {
            let _ = write!(
                s,
                r#"<rect x="{lx}" y="11" width="10" height="10" fill="{color}"/>"#
            );
        }
        let _ = write!(
            s,
            r##"<text x="{}" y="20" font-size="12" fill="#1d2330">{label}</text>"##,
            lx + 14.0
        );
        lx += 24.0 + 7.0 * label.len() as f64;
    }
    // Y axis with gridlines and its label.
    let mut v = 0;
    while v <= top {
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d8dbe2" stroke-width="1"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end" fill="#444">{v}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
        v += step;
    }
    let _ = write!(
        s,
        r##"<text x="14" y="{:.1}" font-size="12" fill="#444" text-anchor="middle" transform="rotate(-90 14 {:.1})">users changed</text>"##,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    // Bars, markers, and every fifth date on the X axis.
    for (i, d) in days.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let mut base = 0;
        let day = first + 86_400 * i as i64;
        for (value, color, what) in [
            (d.created, CREATED, "created"),
            (d.updated, UPDATED, "updated"),
            (d.disabled, DISABLED, "disabled"),
        ] {
            if value > 0 {
                let (y0, y1) = (y(base), y(base + value));
                let _ = write!(
                    s,
                    r#"<rect x="{x:.1}" y="{y1:.1}" width="{bar:.1}" height="{:.1}" fill="{color}"><title>{}: {value} {what}</title></rect>"#,
                    (y0 - y1).max(0.5),
                    month_day(day)
                );
                base += value;
            }
        }
        if d.refused > 0 {
            let cy = y(base) - 9.0;
            let _ = write!(
                s,
                r##"<circle cx="{:.1}" cy="{cy:.1}" r="6" fill="{REFUSED}"><title>{}: {} refused runs</title></circle><text x="{:.1}" y="{:.1}" font-size="9" text-anchor="middle" fill="#fff">{}</text>"##,
                x + bar / 2.0,
                month_day(day),
                d.refused,
                x + bar / 2.0,
                cy + 3.0,
                d.refused.min(99)
            );
        }
        if i % 5 == 0 || i + 1 == days.len() {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#444">{}</text>"##,
                x + bar / 2.0,
                H - BOTTOM + 16.0,
                month_day(day)
            );
        }
    }
    let _ = write!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#444"/><text x="{:.1}" y="{:.1}" font-size="12" fill="#444" text-anchor="middle">day (UTC)</text></svg>"##,
        W - RIGHT,
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w / 2.0,
        H - 8.0
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    fn run(at: i64, c: i64, u: i64, d: i64, refused: bool) -> RunPoint {
        RunPoint {
            started_at: at,
            created: c,
            updated: u,
            disabled: d,
            refused,
        }
    }

    #[test]
    fn runs_fall_into_their_day_and_old_ones_are_left_out() {
        let now = 100 * DAY + 3600;
        let runs = [
            run(now, 5, 1, 0, false),
            run(now - 60, 2, 0, 0, false),
            run(now - DAY, 0, 0, 60, true),
            run(now - 40 * DAY, 999, 0, 0, false),
        ];
        let (first, days) = buckets(&runs, now, 30);
        assert_eq!(first, 71 * DAY);
        assert_eq!(days.len(), 30);
        assert_eq!(
            days[29],
            Day {
                created: 7,
                updated: 1,
                disabled: 0,
                refused: 0
            }
        );
        assert_eq!(
            days[28],
            Day {
                created: 0,
                updated: 0,
                disabled: 60,
                refused: 1
            }
        );
        assert_eq!(days.iter().map(|d| d.created).sum::<i64>(), 7);
    }

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(7), 2);
        assert_eq!(tick_step(60), 20);
        assert_eq!(tick_step(5000), 1000);
        assert!(tick_step(i64::MAX / 2) > 0);
    }

    #[test]
    fn the_svg_has_axes_legend_and_an_escaped_title() {
        let now = 100 * DAY;
        let svg = run_history_svg("c1", "hr <drop>", &[run(now, 3, 0, 60, true)], now, 30);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("hr &lt;drop&gt;") && !svg.contains("<drop>"));
        for label in [
            "created",
            "updated",
            "disabled",
            "refused runs",
            "users changed",
            "day (UTC)",
        ] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains(": 60 disabled</title>"));
        assert!(svg.contains(": 1 refused runs</title>"));
        assert!(svg.contains("3 created, 0 updated, 60 disabled, 1 refused runs"));
    }
}
