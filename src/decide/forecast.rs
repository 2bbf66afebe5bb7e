//! A forecast of a pool's load from its own history, and how far off its forecasts were.
//!
//! The method, in a paragraph: loads that matter here repeat by the day and by the week. To
//! forecast the load `lead_s` from now, take what the load was at that same time of day on each
//! of the last seven days, and scale each by how today's last half hour compares with that
//! day's same half hour (today runs 20 % hotter than yesterday: yesterday's figure, plus 20 %;
//! the ratio is kept within ½ and 2, so a quiet night does not multiply a noon). The forecast
//! is the median of those figures: one odd day (a holiday, an outage) does not move it, the
//! same weekday a week ago counts as one day among seven, and the ratio carries today's level
//! and, through the day's own shape, its trend. It needs two days of history, and says so
//! until it has them.
//!
//! Each run's forecast is kept with its load ([`LoadPoint`]), so the forecasts are scored
//! against what came ([`error_pct`]: the mean absolute percentage error over the last day).

use crate::model::LoadPoint;

/// A day, in seconds.
pub(crate) const DAY_S: i64 = 86_400;
/// How much history the forecast needs before it says anything.
pub(crate) const MIN_HISTORY_S: i64 = 2 * DAY_S;
/// How long the history is kept: a week, and a day to spare for the week-old figures.
pub(crate) const KEEP_S: i64 = 8 * DAY_S + 3_600;
/// Points newer than this are kept as they came (one a run); older ones are folded.
pub(crate) const RECENT_S: i64 = DAY_S;
/// The width of a folded point.
pub(crate) const FOLD_S: i64 = 600;
/// The recent level: the last half hour.
const LEVEL_S: i64 = 1_800;
/// How far a figure may be from the moment it stands for (a folded point's width, and some).
const NEAR_S: i64 = FOLD_S;
/// The bounds of the level ratio.
const RATIO: (f64, f64) = (0.5, 2.0);

/// What the forecast says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Forecast {
    /// Too little history yet: this much, of [`MIN_HISTORY_S`].
    Learning { history_s: i64 },
    /// The load expected `lead_s` from now, from this many days.
    Load { load: f64, days: u32 },
}

/// The load `lead_s` after `now`, from `history` (oldest first): with `span_s` above 0, the
/// highest load from then to `span_s` later (each day's figure is that day's highest over the
/// span).
pub(crate) fn forecast(history: &[LoadPoint], now: i64, lead_s: i64, span_s: i64) -> Forecast {
    let history_s = history.first().map_or(0, |first| now - first.at);
    if history_s < MIN_HISTORY_S {
        return Forecast::Learning { history_s };
    }
    let Some(level_now) = mean_over(history, now - LEVEL_S, now) else {
        return Forecast::Learning { history_s };
    };
    let mut figures: Vec<f64> = (1..=7)
        .filter_map(|days| {
            let then = now - days * DAY_S;
            let level_then = mean_over(history, then - LEVEL_S, then)?;
            let base = highest_over(history, then + lead_s, span_s)
                .or_else(|| nearest(history, then + lead_s))?;
            let ratio = if level_then > 0.0 {
                (level_now / level_then).clamp(RATIO.0, RATIO.1)
            } else if level_now > 0.0 {
                RATIO.1
            } else {
                1.0
            };
            Some(base * ratio)
        })
        .collect();
    if figures.len() < 2 {
        return Forecast::Learning { history_s };
    }
    figures.sort_by(f64::total_cmp);
    let middle = figures.len() / 2;
    let load = if figures.len().is_multiple_of(2) {
        f64::midpoint(figures[middle - 1], figures[middle])
    } else {
        figures[middle]
    };
    Forecast::Load {
        load,
        days: figures.len() as u32,
    }
}

/// The mean load of the points in `(from, to]`.
fn mean_over(history: &[LoadPoint], from: i64, to: i64) -> Option<f64> {
    let start = history.partition_point(|point| point.at <= from);
    let end = history.partition_point(|point| point.at <= to);
    let window = &history[start..end];
    (!window.is_empty())
        .then(|| window.iter().map(|point| point.load).sum::<f64>() / window.len() as f64)
}

/// The highest load of the points in `[at, at + span_s]`, for a span above 0.
fn highest_over(history: &[LoadPoint], at: i64, span_s: i64) -> Option<f64> {
    if span_s <= 0 {
        return None;
    }
    let start = history.partition_point(|point| point.at < at);
    let end = history.partition_point(|point| point.at <= at + span_s);
    history[start..end]
        .iter()
        .map(|point| point.load)
        .reduce(f64::max)
}

/// The load of the point nearest `at`, if one is within [`NEAR_S`].
fn nearest(history: &[LoadPoint], at: i64) -> Option<f64> {
    nearest_around(history, history.partition_point(|point| point.at < at), at)
}

/// [`nearest`], given the index of the first point at or after `at`.
fn nearest_around(history: &[LoadPoint], after: usize, at: i64) -> Option<f64> {
    [after.checked_sub(1), Some(after)]
        .into_iter()
        .flatten()
        .filter_map(|index| history.get(index))
        .filter(|point| (point.at - at).abs() <= NEAR_S)
        .min_by_key(|point| (point.at - at).abs())
        .map(|point| point.load)
}

/// The mean absolute percentage error of the forecasts made over the last day whose moment has
/// come, each against the load measured nearest it; `None` until one can be scored. Moments
/// with no load are left out (any error is infinite there).
pub(crate) fn error_pct(history: &[LoadPoint], now: i64) -> Option<f64> {
    let since = history.partition_point(|point| point.at < now - DAY_S);
    // The moments come in order while the lead stays the same: each is looked up from where
    // the last one was found, not from the start (a run scores a day of forecasts).
    let mut after = since;
    let (mut sum, mut count) = (0.0, 0_u32);
    for point in &history[since..] {
        let Some((expected, lead)) = point.forecast else {
            continue;
        };
        let due = point.at + lead;
        if due > now {
            continue;
        }
        if after > 0 && history[after - 1].at >= due {
            after = history.partition_point(|other| other.at < due);
        }
        while history.get(after).is_some_and(|point| point.at < due) {
            after += 1;
        }
        let Some(actual) = nearest_around(history, after, due) else {
            continue;
        };
        if actual > 0.0 {
            sum += (expected - actual).abs() / actual;
            count += 1;
        }
    }
    (count > 0).then(|| 100.0 * sum / f64::from(count))
}

/// `history` with this run's point, folded: the last day's points as they came, older ones
/// merged into [`FOLD_S`] slots (each the highest load of its slot, so the folded history
/// never understates a peak), nothing older than [`KEEP_S`].
pub(crate) fn record(history: &[LoadPoint], point: LoadPoint) -> Vec<LoadPoint> {
    let now = point.at;
    let mut kept: Vec<LoadPoint> = Vec::with_capacity(history.len() + 1);
    for old in history
        .iter()
        .filter(|old| old.at > now - KEEP_S && old.at < now)
    {
        if old.at >= now - RECENT_S {
            kept.push(*old);
            continue;
        }
        let slot = old.at.div_euclid(FOLD_S) * FOLD_S;
        match kept.last_mut() {
            Some(last) if last.at == slot => last.load = last.load.max(old.load),
            _ => kept.push(LoadPoint {
                at: slot,
                load: old.load,
                forecast: None,
                peak: None,
            }),
        }
    }
    kept.push(point);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    /// A point a minute over `days` days up to `NOW`, of `load(t)`.
    fn minutes(days: i64, load: impl Fn(i64) -> f64) -> Vec<LoadPoint> {
        (0..=days * 1_440)
            .map(|i| NOW - days * DAY_S + i * 60)
            .map(|at| LoadPoint {
                at,
                load: load(at),
                forecast: None,
                peak: None,
            })
            .collect()
    }

    fn daily_sine(at: i64) -> f64 {
        let phase = std::f64::consts::TAU * (at.rem_euclid(DAY_S) as f64) / DAY_S as f64;
        100.0 + 80.0 * phase.sin()
    }

    #[test]
    fn a_pure_daily_sine_is_forecast_exactly() {
        let history = minutes(8, daily_sine);
        for lead in [0, 60, 180, 3_600, 12 * 3_600] {
            let Forecast::Load { load, days } = forecast(&history, NOW, lead, 0) else {
                panic!("lead {lead}: no forecast");
            };
            assert_eq!(days, 7, "lead {lead}");
            assert!(
                (load - daily_sine(NOW + lead)).abs() < 1e-9,
                "lead {lead}: {load} against {}",
                daily_sine(NOW + lead)
            );
        }
    }

    #[test]
    fn a_growing_level_is_carried_and_the_weekday_counts_as_one_day() {
        // Each day 10 % above the one before: today's level, not the week's.
        let growth = |at: i64| daily_sine(at) * 1.1_f64.powf((at - NOW) as f64 / DAY_S as f64);
        let Forecast::Load { load, .. } = forecast(&minutes(8, growth), NOW, 3_600, 0) else {
            panic!("no forecast");
        };
        let expected = growth(NOW + 3_600);
        assert!(
            (load - expected).abs() / expected < 0.01,
            "{load} against {expected}"
        );
        // One odd day (ten times the load a week ago) does not move the median.
        let odd = |at: i64| {
            let week_ago = (NOW - 7 * DAY_S - 3_600..NOW - 6 * DAY_S).contains(&at);
            daily_sine(at) * if week_ago { 10.0 } else { 1.0 }
        };
        let Forecast::Load { load, .. } = forecast(&minutes(8, odd), NOW, 600, 0) else {
            panic!("no forecast");
        };
        assert!((load - daily_sine(NOW + 600)).abs() < 1e-9, "{load}");
    }

    #[test]
    fn it_is_silent_until_it_has_two_days() {
        for (days, hours) in [(0, 0), (0, 5), (1, 0), (1, 23)] {
            let history: Vec<LoadPoint> = minutes(days, daily_sine)
                .into_iter()
                .chain(
                    (1..=hours * 60)
                        .map(|i| NOW - (days * 24 + hours) * 3_600 + i * 60 - 60)
                        .map(|at| LoadPoint {
                            at,
                            load: 1.0,
                            forecast: None,
                            peak: None,
                        }),
                )
                .collect::<Vec<_>>();
            let mut history = history;
            history.sort_by_key(|point| point.at);
            assert!(
                matches!(forecast(&history, NOW, 180, 0), Forecast::Learning { .. }),
                "{days} day(s) {hours} h"
            );
        }
        assert_eq!(
            forecast(&[], NOW, 180, 0),
            Forecast::Learning { history_s: 0 }
        );
        assert!(matches!(
            forecast(&minutes(2, daily_sine), NOW, 180, 0),
            Forecast::Load { days: 2, .. }
        ));
    }

    #[test]
    fn forecasts_are_scored_against_what_came() {
        // Each run forecast 10 % too much a minute ahead: a 10 % error. A forecast whose moment
        // has not come yet, and one for a moment with no load, are not scored.
        let mut history = minutes(2, |_| 50.0);
        for point in &mut history {
            point.forecast = Some((55.0, 60));
        }
        assert!((error_pct(&history, NOW).unwrap() - 10.0).abs() < 1e-9);
        let idle = minutes(2, |_| 0.0)
            .into_iter()
            .map(|point| LoadPoint {
                forecast: Some((5.0, 60)),
                ..point
            })
            .collect::<Vec<_>>();
        assert_eq!(error_pct(&idle, NOW), None);
        assert_eq!(error_pct(&minutes(2, |_| 50.0), NOW), None);
    }

    /// The scoring's walk gives what looking each moment up afresh gives, when the lead changes
    /// midway (an operator's edit) too.
    #[test]
    fn scoring_walks_the_history_as_a_fresh_look_up_would() {
        let mut history = minutes(2, daily_sine);
        for (i, point) in history.iter_mut().enumerate() {
            let lead = if i % 700 < 350 { 180 } else { 60 };
            point.forecast = Some((daily_sine(point.at + lead) * 1.05 + (i % 7) as f64, lead));
        }
        let fresh = {
            let since = history.partition_point(|p| p.at < NOW - DAY_S);
            let errors: Vec<f64> = history[since..]
                .iter()
                .filter_map(|p| {
                    let (expected, lead) = p.forecast?;
                    let due = p.at + lead;
                    let actual = (due <= NOW).then(|| nearest(&history, due))??;
                    (actual > 0.0).then(|| (expected - actual).abs() / actual)
                })
                .collect();
            100.0 * errors.iter().sum::<f64>() / errors.len() as f64
        };
        assert!((error_pct(&history, NOW).unwrap() - fresh).abs() < 1e-9);
    }

    #[test]
    fn the_history_is_folded_and_bounded() {
        let mut history = Vec::new();
        for point in minutes(10, daily_sine) {
            history = record(&history, point);
        }
        // A day a minute apart, and seven more in ten-minute slots.
        let recent = history.iter().filter(|p| p.at >= NOW - RECENT_S).count();
        assert_eq!(recent, 1_441);
        assert!(history.len() < 1_441 + 7 * 144 + 10, "{}", history.len());
        assert!(history.first().unwrap().at > NOW - KEEP_S);
        assert!(history.windows(2).all(|pair| pair[0].at < pair[1].at));
        // A folded slot keeps its highest load.
        let week_ago = history.iter().find(|p| p.at >= NOW - 7 * DAY_S).unwrap();
        let slot_peak = (0..10)
            .map(|i| daily_sine(week_ago.at + i * 60))
            .fold(f64::MIN, f64::max);
        assert!((week_ago.load - slot_peak).abs() < 1e-9);
        // Over a span, each day's highest: the sine's over the next hour.
        let Forecast::Load { load, .. } = forecast(&minutes(8, daily_sine), NOW, 180, 3_600) else {
            panic!("no forecast");
        };
        let top = (0..=60)
            .map(|i| daily_sine(NOW + 180 + i * 60))
            .fold(f64::MIN, f64::max);
        assert!((load - top).abs() < 1e-9, "{load} against {top}");
        // And the folded history still forecasts the sine closely.
        let Forecast::Load { load, .. } = forecast(&history, NOW, 180, 0) else {
            panic!("no forecast");
        };
        assert!((load - daily_sine(NOW + 180)).abs() < 2.0, "{load}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// On any noise the forecast is never negative and never above twice the highest
            /// load seen.
            #[test]
            fn bounded_on_noise(seed in any::<u64>(), lead in 0i64..7_200) {
                let mut state = seed | 1;
                let mut noise = move || {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 1_000) as f64
                };
                let history: Vec<LoadPoint> = (0..=3 * 144)
                    .map(|i| LoadPoint { at: NOW - 3 * DAY_S + i * 600, load: noise(), forecast: None, peak: None })
                    .collect();
                let top = history.iter().map(|p| p.load).fold(0.0, f64::max);
                if let Forecast::Load { load, .. } = forecast(&history, NOW, lead, 0) {
                    prop_assert!((0.0..=2.0 * top).contains(&load), "{load} of {top}");
                }
            }
        }
    }
}
