//! Maintenance windows for the rollout governor: `"[DAYS] HH:MM-HH:MM [TZ]"`, such as
//! `"02:00-04:00"` or `"Mon-Fri 22:00-06:00 Europe/Berlin"`. A reload that falls outside its
//! window is deferred and re-queued for [`Window::next_open`], so the window answers both
//! "is it open now" and "when does it next open", for a time passed in (no clock here).
//!
//! Semantics:
//! - DAYS name the day a window *opens*: `Fri 22:00-06:00` is open from Friday 22:00 to
//!   Saturday 06:00, Saturday not being in DAYS. Absent DAYS means every day.
//! - An occurrence is the half-open interval `[start, end)`: open at the start minute, closed
//!   at the end minute. `24:00` as the end is the next midnight, so `00:00-24:00` is all day.
//! - Wall-clock times are in TZ (UTC when absent). A local time skipped by a DST gap maps to
//!   the first instant after the gap; a local time that happens twice (a fold) maps to its
//!   first occurrence. So on a spring-forward day in Europe/Berlin `01:30-02:30` is open from
//!   01:30 CET until the clocks jump at 02:00 CET (30 real minutes), and `02:00-03:00` lies
//!   wholly in the gap and does not open at all that day; on a fall-back day `02:00-03:00`
//!   opens at the first 02:00 and stays open through the repeated hour until 03:00 CET (two
//!   real hours).
//! - The tz database is jiff's bundled copy (see Cargo.toml), never the file system.

use std::sync::LazyLock;

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// The syntax and an example, for error messages.
const SYNTAX: &str =
    "expected \"[DAYS] HH:MM-HH:MM [TZ]\" such as \"Mon-Fri 22:00-06:00 Europe/Berlin\"";

/// Day names in the order of jiff's Monday-zero offset.
const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Minutes in a day; also the end minute of `24:00`.
const MINUTES_PER_DAY: u16 = 24 * 60;

/// Days searched ahead by [`Window::next_open`]: a week reaches every named day, and a second
/// week covers an occurrence swallowed by a DST gap (gaps are hours long and months apart).
const SEARCH_DAYS: i64 = 15;

/// The bundled tz database, opened once; looking a zone up in it reads no file.
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// A parsed maintenance window: the days it opens on, its wall-clock span and its zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// Bit `i` set: the window opens on day `i`, Monday being 0. Never zero.
    days: u8,
    /// Opening minute of the day, `0..1440`.
    start: u16,
    /// Closing minute, `0..=1440`, never equal to `start`; at or before `start` means the
    /// window closes on the next day.
    end: u16,
    /// Where the wall-clock times are read.
    zone: TimeZone,
}

/// A maintenance window that cannot be parsed: the text, what is wrong, and the syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid maintenance window {value:?}: {reason}; {SYNTAX}")]
pub struct InvalidWindow {
    /// The text as given.
    pub value: String,
    /// What is wrong with it, naming the offending part.
    pub reason: String,
}

impl Window {
    /// Parses `"[DAYS] HH:MM-HH:MM [TZ]"`. DAYS is a comma-separated list of three-letter day
    /// names (any case) or ranges of them, which may wrap (`Fri-Mon`); a range from a day to
    /// itself is that one day. Times are `00:00`-`23:59`, and `24:00` as the end. TZ is an
    /// IANA zone name. Whitespace around the parts, the commas and the dashes is ignored.
    pub fn parse(text: &str) -> Result<Window, InvalidWindow> {
        parse_parts(text).map_err(|reason| InvalidWindow {
            value: text.to_owned(),
            reason,
        })
    }

    /// Whether the window is open at this Unix time (start inclusive, end exclusive).
    /// Instants jiff cannot represent (beyond the years -9999 and 9999) are never open.
    pub fn is_open(&self, at_unix_seconds: i64) -> bool {
        self.occurrence_containing(at_unix_seconds).is_some()
    }

    /// The Unix time at which the window next opens: `at_unix_seconds` itself when the
    /// window is open then, else the start of the next occurrence, so a deferred reload can
    /// be re-queued for exactly that second. `i64::MAX` (never) when no opening is
    /// representable: `at_unix_seconds` or the opening lies outside jiff's years -9999..=9999.
    pub fn next_open(&self, at_unix_seconds: i64) -> i64 {
        if self.is_open(at_unix_seconds) {
            return at_unix_seconds;
        }
        let Ok(at) = Timestamp::from_second(at_unix_seconds) else {
            return i64::MAX;
        };
        let today = self.zone.to_datetime(at).date();
        // Occurrences open in day order (the local-to-instant mapping never goes backwards),
        // so the first one opening at or after `at` is the next.
        (0..=SEARCH_DAYS)
            .filter_map(|ahead| today.checked_add(ahead.days()).ok())
            .filter_map(|day| self.occurrence(day))
            .find(|&(open, close)| open < close && open >= at)
            .map_or(i64::MAX, |(open, _)| open.as_second())
    }

    /// The Unix time at which the occurrence open at `at_unix_seconds` closes, or `None` when
    /// the window is closed then. Occurrences on consecutive days may touch (`00:00-24:00`),
    /// so the window can be open again at the returned instant: check [`Window::is_open`].
    pub fn closes_at(&self, at_unix_seconds: i64) -> Option<i64> {
        self.occurrence_containing(at_unix_seconds)
            .map(|(_, close)| close.as_second())
    }

    /// The occurrence `[open, close)` containing this instant, if any.
    fn occurrence_containing(&self, at_unix_seconds: i64) -> Option<(Timestamp, Timestamp)> {
        let at = Timestamp::from_second(at_unix_seconds).ok()?;
        let today = self.zone.to_datetime(at).date();
        // An occurrence lasts at most a day, so only those opening today or the day before
        // can contain `at`; the day before that is checked too, cheaply, in case a zone
        // shifts its clock across midnight.
        (0..=2i64)
            .filter_map(|back| today.checked_sub(back.days()).ok())
            .filter_map(|day| self.occurrence(day))
            .find(|&(open, close)| open <= at && at < close)
    }

    /// The occurrence opening on this local day, as instants `[open, close)`; `None` when the
    /// window does not open that day (or the instants are out of jiff's range). The interval
    /// is empty when a DST gap swallows the whole window.
    fn occurrence(&self, day: Date) -> Option<(Timestamp, Timestamp)> {
        let weekday = day.weekday().to_monday_zero_offset();
        if self.days & (1 << weekday) == 0 {
            return None;
        }
        let end = if self.end > self.start {
            self.end
        } else {
            self.end + MINUTES_PER_DAY
        };
        let midnight = day.to_datetime(jiff::civil::Time::midnight());
        let local = |minute: u16| {
            midnight
                .checked_add(SignedDuration::from_mins(i64::from(minute)))
                .ok()
        };
        let open = self.instant(local(self.start)?)?;
        let close = self.instant(local(end)?)?;
        Some((open, close))
    }

    /// The instant of a local time: the first instant after a DST gap for a time in the gap,
    /// the first occurrence for a time in a fold.
    fn instant(&self, local: DateTime) -> Option<Timestamp> {
        match self.zone.to_ambiguous_timestamp(local).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(local).ok(),
            // In a fold the offset before the transition is the larger one, so it gives the
            // earlier instant.
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(local).ok(),
            // Read with the offset after the gap, a time in the gap gives an instant before
            // the transition; the transition that follows it is the first instant after the
            // gap. Should the zone report no transition, the compatible reading (the offset
            // before the gap, an instant after the transition) is used.
            AmbiguousOffset::Gap { before, after } => {
                let early = after.to_timestamp(local).ok()?;
                match self.zone.following(early).next() {
                    Some(transition) => Some(transition.timestamp()),
                    None => before.to_timestamp(local).ok(),
                }
            }
        }
    }
}

/// Parses the window, returning what is wrong as the error's reason.
fn parse_parts(text: &str) -> Result<Window, String> {
    let normalized = tighten_separators(text);
    let tokens: Vec<&str> = normalized.split_whitespace().collect();
    if tokens.is_empty() {
        return Err("it is empty".to_owned());
    }
    let Some(at) = tokens
        .iter()
        .position(|t| t.starts_with(|c: char| c.is_ascii_digit()))
    else {
        if let Some(glued) = tokens.iter().find(|t| t.contains(':')) {
            return Err(format!(
                "no time range in {glued:?} (put a space between DAYS and HH:MM-HH:MM)"
            ));
        }
        return Err("the time range HH:MM-HH:MM is missing".to_owned());
    };
    let days = match &tokens[..at] {
        [] => 0b111_1111,
        [list] => parse_days(list)?,
        [_, extra, ..] => {
            return Err(format!(
                "unexpected {extra:?} before the time range (separate days with commas)"
            ));
        }
    };
    let (start, end) = parse_range(tokens[at])?;
    let zone = match &tokens[at + 1..] {
        [] => TimeZone::UTC,
        [name] => TZDB.get(name).map_err(|_| {
            format!("unknown time zone {name:?} (use an IANA name such as Europe/Berlin, or UTC)")
        })?,
        [_, extra, ..] => return Err(format!("unexpected {extra:?} after the time zone")),
    };
    Ok(Window {
        days,
        start,
        end,
        zone,
    })
}

/// Drops whitespace around `-` and `,`, so `"Mon , Wed - Fri 22:00 - 06:00"` reads as
/// `"Mon,Wed-Fri 22:00-06:00"`. A comma is not joined to a time after it: `"Mon, 02:00-03:00"`
/// stays a day list with an empty item, and is reported as that.
fn tighten_separators(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if c == '-' || c == ',' {
            out.truncate(out.trim_end().len());
            out.push(c);
            let after = rest.trim_start();
            if c == '-' || !after.starts_with(|d: char| d.is_ascii_digit()) {
                rest = after;
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses `Mon,Wed-Fri` into a day bit set (bit 0 = Monday).
fn parse_days(list: &str) -> Result<u8, String> {
    let mut days = 0u8;
    for item in list.split(',') {
        if item.is_empty() {
            return Err(format!("empty day in the list {list:?}"));
        }
        match item.split_once('-') {
            None => days |= 1 << parse_day(item)?,
            Some((first, last)) => {
                let (mut day, last) = (parse_day(first)?, parse_day(last)?);
                loop {
                    days |= 1 << day;
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            }
        }
    }
    Ok(days)
}

/// Parses a three-letter day name, any case, into its Monday-zero offset.
fn parse_day(name: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|known| known.eq_ignore_ascii_case(name))
        .and_then(|i| u8::try_from(i).ok())
        .ok_or_else(|| format!("unknown day {name:?} (use Mon, Tue, Wed, Thu, Fri, Sat or Sun)"))
}

/// Parses `HH:MM-HH:MM` into start and end minutes.
fn parse_range(range: &str) -> Result<(u16, u16), String> {
    let Some((start, end)) = range.split_once('-') else {
        return Err(format!(
            "missing '-' between the start and the end in {range:?}"
        ));
    };
    let start_minute = parse_time(start)?;
    if start_minute == MINUTES_PER_DAY {
        return Err(format!(
            "the start {start:?} is out of range (24:00 is allowed only as the end)"
        ));
    }
    let end_minute = parse_time(end)?;
    if end_minute == start_minute {
        return Err(format!(
            "the start and the end are both {start}, which leaves no time open \
             (for a whole day use 00:00-24:00)"
        ));
    }
    Ok((start_minute, end_minute))
}

/// Parses `HH:MM` (`00:00`-`23:59`, or `24:00`) into minutes since midnight.
fn parse_time(time: &str) -> Result<u16, String> {
    let bad = || format!("bad time {time:?} (use two-digit HH:MM)");
    let (hours, minutes) = time.split_once(':').ok_or_else(bad)?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(hours) || !two_digits(minutes) {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    if minutes > 59 {
        return Err(format!("the minute in {time:?} is out of range (00-59)"));
    }
    if hours > 24 || (hours == 24 && minutes != 0) {
        return Err(format!(
            "the hour in {time:?} is out of range (00-23, or 24:00 as the end)"
        ));
    }
    Ok(hours * 60 + minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix seconds of an RFC 3339 instant with its offset, e.g. `2026-01-05T02:00:00+01:00`.
    fn t(instant: &str) -> i64 {
        instant
            .parse::<Timestamp>()
            .unwrap_or_else(|e| panic!("{instant}: {e}"))
            .as_second()
    }

    fn window(text: &str) -> Window {
        Window::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Bit set of the named days, for expected values.
    fn days(names: &[&str]) -> u8 {
        names
            .iter()
            .map(|n| 1u8 << parse_day(n).unwrap())
            .fold(0, |a, b| a | b)
    }

    #[test]
    fn parses_every_form() {
        let berlin = TZDB.get("Europe/Berlin").unwrap();
        let all = 0b111_1111;
        let cases: &[(&str, u8, u16, u16, &TimeZone)] = &[
            ("02:00-04:00", all, 120, 240, &TimeZone::UTC),
            (
                "Mon-Fri 22:00-06:00 Europe/Berlin",
                days(&["Mon", "Tue", "Wed", "Thu", "Fri"]),
                1320,
                360,
                &berlin,
            ),
            (
                "Sat,Sun 00:00-23:59",
                days(&["Sat", "Sun"]),
                0,
                1439,
                &TimeZone::UTC,
            ),
            (
                "Mon,Wed-Fri 09:30-10:00 UTC",
                days(&["Mon", "Wed", "Thu", "Fri"]),
                570,
                600,
                &TimeZone::UTC,
            ),
            (
                "Fri-Mon 01:00-02:00",
                days(&["Fri", "Sat", "Sun", "Mon"]),
                60,
                120,
                &TimeZone::UTC,
            ),
            ("Sun-Sat 01:00-02:00", all, 60, 120, &TimeZone::UTC),
            (
                "Wed-Wed 01:00-02:00",
                days(&["Wed"]),
                60,
                120,
                &TimeZone::UTC,
            ),
            (
                "mon,TUE 01:00-02:00 utc",
                days(&["Mon", "Tue"]),
                60,
                120,
                &TimeZone::UTC,
            ),
            ("00:00-24:00", all, 0, 1440, &TimeZone::UTC),
            ("22:00-24:00", all, 1320, 1440, &TimeZone::UTC),
            ("23:59-00:00", all, 1439, 0, &TimeZone::UTC),
            (
                "  Mon , Wed - Fri   09:30 - 10:00   europe/berlin ",
                days(&["Mon", "Wed", "Thu", "Fri"]),
                570,
                600,
                &berlin,
            ),
            (
                "\tSat\t01:00-02:00\n",
                days(&["Sat"]),
                60,
                120,
                &TimeZone::UTC,
            ),
        ];
        for &(text, days, start, end, zone) in cases {
            let expected = Window {
                days,
                start,
                end,
                zone: zone.clone(),
            };
            assert_eq!(window(text), expected, "{text:?}");
        }
    }

    #[test]
    fn rejects_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("Mon", "the time range HH:MM-HH:MM is missing"),
            ("Mox 02:00-03:00", "unknown day \"Mox\""),
            ("Monday 02:00-03:00", "unknown day \"Monday\""),
            ("Mon-Frx 02:00-03:00", "unknown day \"Frx\""),
            ("Mon,,Tue 02:00-03:00", "empty day in the list \"Mon,,Tue\""),
            ("Mon, 02:00-03:00", "empty day in the list \"Mon,\""),
            ("Mon,02:00-03:00", "no time range in \"Mon,02:00-03:00\""),
            (
                "Mon Tue 02:00-03:00",
                "unexpected \"Tue\" before the time range",
            ),
            ("UTC 02:00-03:00", "unknown day \"UTC\""),
            ("25:00-03:00", "the hour in \"25:00\" is out of range"),
            ("02:00-25:00", "the hour in \"25:00\" is out of range"),
            ("12:60-13:00", "the minute in \"12:60\" is out of range"),
            ("24:00-03:00", "the start \"24:00\" is out of range"),
            ("02:00-24:01", "the hour in \"24:01\" is out of range"),
            ("2:00-03:00", "bad time \"2:00\""),
            ("02:00-0300", "bad time \"0300\""),
            ("02:00-", "bad time \"\""),
            ("02:00-03:00-04:00", "bad time \"03:00-04:00\""),
            (
                "02:00 03:00",
                "missing '-' between the start and the end in \"02:00\"",
            ),
            (
                "0200",
                "missing '-' between the start and the end in \"0200\"",
            ),
            (
                "02:00-02:00",
                "the start and the end are both 02:00, which leaves no time open",
            ),
            ("00:00-00:00", "the start and the end are both 00:00"),
            (
                "02:00-03:00 Mars/Olympus",
                "unknown time zone \"Mars/Olympus\"",
            ),
            (
                "02:00-03:00 UTC extra",
                "unexpected \"extra\" after the time zone",
            ),
            ("02:00-03:00 UTC 5", "unexpected \"5\" after the time zone"),
        ];
        for &(text, reason) in cases {
            let err = match Window::parse(text) {
                Ok(w) => panic!("{text:?} parsed as {w:?}"),
                Err(e) => e,
            };
            assert_eq!(err.value, text);
            assert!(
                err.reason.starts_with(reason),
                "{text:?}: reason {:?}, expected it to start with {reason:?}",
                err.reason
            );
            let shown = err.to_string();
            assert!(shown.contains(&format!("{text:?}")), "{shown}");
            assert!(shown.contains("\"[DAYS] HH:MM-HH:MM [TZ]\""), "{shown}");
            assert!(
                shown.contains("Mon-Fri 22:00-06:00 Europe/Berlin"),
                "{shown}"
            );
        }
    }

    #[test]
    fn error_display() {
        let err = Window::parse("02:00-03:00 Mars/Olympus").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid maintenance window \"02:00-03:00 Mars/Olympus\": unknown time zone \
             \"Mars/Olympus\" (use an IANA name such as Europe/Berlin, or UTC); expected \
             \"[DAYS] HH:MM-HH:MM [TZ]\" such as \"Mon-Fri 22:00-06:00 Europe/Berlin\""
        );
    }

    /// (window, instant, open?) tables. 2026-01-05 is a Monday.
    fn assert_open(cases: &[(&str, &str, bool)]) {
        for &(text, instant, open) in cases {
            assert_eq!(
                window(text).is_open(t(instant)),
                open,
                "{text:?} at {instant}"
            );
        }
    }

    #[test]
    fn open_at_the_boundaries() {
        assert_open(&[
            ("02:00-04:00", "2026-01-05T01:59:59Z", false),
            ("02:00-04:00", "2026-01-05T02:00:00Z", true),
            ("02:00-04:00", "2026-01-05T03:59:59Z", true),
            ("02:00-04:00", "2026-01-05T04:00:00Z", false),
            ("02:00-04:00", "2026-01-10T03:00:00Z", true),
            ("00:00-24:00", "2026-01-05T00:00:00Z", true),
            ("00:00-24:00", "2026-01-05T23:59:59Z", true),
            ("Mon 00:00-24:00", "2026-01-05T23:59:59Z", true),
            ("Mon 00:00-24:00", "2026-01-06T00:00:00Z", false),
            ("Mon 00:00-24:00", "2026-01-04T23:59:59Z", false),
            ("Sat,Sun 00:00-23:59", "2026-01-10T23:58:59Z", true),
            ("Sat,Sun 00:00-23:59", "2026-01-10T23:59:00Z", false),
            ("Sat,Sun 00:00-23:59", "2026-01-09T12:00:00Z", false),
            ("Mon,Wed-Fri 09:30-10:00 UTC", "2026-01-05T09:30:00Z", true),
            ("Mon,Wed-Fri 09:30-10:00 UTC", "2026-01-06T09:30:00Z", false),
            ("Mon,Wed-Fri 09:30-10:00 UTC", "2026-01-07T09:45:00Z", true),
            ("Mon,Wed-Fri 09:30-10:00 UTC", "2026-01-09T09:59:59Z", true),
            ("Mon,Wed-Fri 09:30-10:00 UTC", "2026-01-10T09:45:00Z", false),
        ]);
    }

    #[test]
    fn crossing_midnight() {
        assert_open(&[
            // Every day: the evening part and the morning part.
            ("22:00-06:00", "2026-01-05T21:59:59Z", false),
            ("22:00-06:00", "2026-01-05T22:00:00Z", true),
            ("22:00-06:00", "2026-01-06T00:00:00Z", true),
            ("22:00-06:00", "2026-01-06T05:59:59Z", true),
            ("22:00-06:00", "2026-01-06T06:00:00Z", false),
            ("22:00-06:00", "2026-01-05T03:00:00Z", true),
            ("23:59-00:00", "2026-01-05T23:59:30Z", true),
            ("23:59-00:00", "2026-01-06T00:00:00Z", false),
            // Friday only: open into Saturday morning, though Saturday is not in DAYS.
            ("Fri 22:00-06:00", "2026-01-09T22:00:00Z", true),
            ("Fri 22:00-06:00", "2026-01-10T05:59:59Z", true),
            ("Fri 22:00-06:00", "2026-01-10T06:00:00Z", false),
            ("Fri 22:00-06:00", "2026-01-10T22:00:00Z", false),
            // Friday morning belongs to Thursday's occurrence, which there is none of.
            ("Fri 22:00-06:00", "2026-01-09T03:00:00Z", false),
            // Sunday night into Monday, named Sun.
            ("Sun 23:00-01:00", "2026-01-12T00:30:00Z", true),
            ("Sun 23:00-01:00", "2026-01-05T23:30:00Z", false),
        ]);
    }

    #[test]
    fn wrapping_day_ranges() {
        assert_open(&[
            ("Fri-Mon 01:00-02:00", "2026-01-08T01:30:00Z", false), // Thu
            ("Fri-Mon 01:00-02:00", "2026-01-09T01:30:00Z", true),  // Fri
            ("Fri-Mon 01:00-02:00", "2026-01-10T01:30:00Z", true),  // Sat
            ("Fri-Mon 01:00-02:00", "2026-01-11T01:30:00Z", true),  // Sun
            ("Fri-Mon 01:00-02:00", "2026-01-12T01:30:00Z", true),  // Mon
            ("Fri-Mon 01:00-02:00", "2026-01-13T01:30:00Z", false), // Tue
            ("Sat-Sun 01:00-02:00", "2026-01-11T01:30:00Z", true),  // Sun
            ("Sat-Sun 01:00-02:00", "2026-01-12T01:30:00Z", false), // Mon
            ("Sun-Mon 23:00-01:00", "2026-01-13T00:30:00Z", true),  // Mon night into Tue
            ("Sun-Mon 23:00-01:00", "2026-01-14T00:30:00Z", false), // Tue night into Wed
        ]);
    }

    #[test]
    fn zone_offsets_in_winter_and_summer() {
        let w = "Mon-Fri 22:00-06:00 Europe/Berlin";
        assert_open(&[
            // Winter, CET (+01:00): Monday 22:00 local is 21:00 UTC.
            (w, "2026-01-05T20:59:59Z", false),
            (w, "2026-01-05T21:00:00Z", true),
            (w, "2026-01-06T04:59:59Z", true),
            (w, "2026-01-06T05:00:00Z", false),
            // Summer, CEST (+02:00): Monday 2026-07-06 22:00 local is 20:00 UTC.
            (w, "2026-07-06T19:59:59Z", false),
            (w, "2026-07-06T20:00:00Z", true),
            (w, "2026-07-07T03:59:59Z", true),
            (w, "2026-07-07T04:00:00Z", false),
            // Friday night runs into Saturday; Saturday night does not open.
            (w, "2026-07-11T03:00:00+02:00", true),
            (w, "2026-07-11T23:00:00+02:00", false),
            // The days are Berlin's: Sunday 23:30 UTC is Monday 00:30 in Berlin.
            (
                "Mon 00:00-01:00 Europe/Berlin",
                "2026-01-04T23:30:00Z",
                true,
            ),
            (
                "Mon 00:00-01:00 Europe/Berlin",
                "2026-01-05T00:30:00Z",
                false,
            ),
        ]);
    }

    #[test]
    fn dst_gap_in_berlin() {
        // 2026-03-29 (a Sunday): at 02:00 CET the clocks go to 03:00 CEST (01:00 UTC).
        assert_open(&[
            // 02:00-03:00 lies wholly in the gap: it does not open that day.
            ("02:00-03:00 Europe/Berlin", "2026-03-29T00:59:59Z", false),
            ("02:00-03:00 Europe/Berlin", "2026-03-29T01:00:00Z", false),
            ("02:00-03:00 Europe/Berlin", "2026-03-29T01:30:00Z", false),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-03-28T02:30:00+01:00",
                true,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-03-30T02:30:00+02:00",
                true,
            ),
            // A start in the gap opens at the first instant after it.
            ("02:30-04:00 Europe/Berlin", "2026-03-29T00:59:59Z", false),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-03-29T03:00:00+02:00",
                true,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-03-29T03:59:59+02:00",
                true,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-03-29T04:00:00+02:00",
                false,
            ),
            // An end in the gap closes at the first instant after it.
            (
                "01:30-02:30 Europe/Berlin",
                "2026-03-29T01:29:59+01:00",
                false,
            ),
            (
                "01:30-02:30 Europe/Berlin",
                "2026-03-29T01:30:00+01:00",
                true,
            ),
            (
                "01:30-02:30 Europe/Berlin",
                "2026-03-29T01:59:59+01:00",
                true,
            ),
            (
                "01:30-02:30 Europe/Berlin",
                "2026-03-29T03:00:00+02:00",
                false,
            ),
            // Crossing midnight over the gap: Saturday 23:00 CET to Sunday 04:00 CEST.
            (
                "Sat 23:00-04:00 Europe/Berlin",
                "2026-03-28T23:00:00+01:00",
                true,
            ),
            (
                "Sat 23:00-04:00 Europe/Berlin",
                "2026-03-29T03:59:59+02:00",
                true,
            ),
            (
                "Sat 23:00-04:00 Europe/Berlin",
                "2026-03-29T04:00:00+02:00",
                false,
            ),
        ]);
        let w = window("02:00-03:00 Europe/Berlin");
        assert_eq!(
            w.next_open(t("2026-03-29T00:00:00Z")),
            t("2026-03-30T02:00:00+02:00")
        );
        let w = window("02:30-04:00 Europe/Berlin");
        assert_eq!(
            w.next_open(t("2026-03-29T00:00:00Z")),
            t("2026-03-29T03:00:00+02:00")
        );
        assert_eq!(
            w.closes_at(t("2026-03-29T03:00:00+02:00")),
            Some(t("2026-03-29T04:00:00+02:00"))
        );
        let w = window("01:30-02:30 Europe/Berlin");
        assert_eq!(
            w.closes_at(t("2026-03-29T01:45:00+01:00")),
            Some(t("2026-03-29T03:00:00+02:00"))
        );
    }

    #[test]
    fn dst_fold_in_berlin() {
        // 2026-10-25 (a Sunday): at 03:00 CEST (01:00 UTC) the clocks go back to 02:00 CET,
        // so 02:00-03:00 happens twice. A time in the fold means its first occurrence.
        assert_open(&[
            // 02:00-03:00 opens at the first 02:00 and closes at 03:00 CET: two hours.
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T01:59:59+02:00",
                false,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T02:00:00+02:00",
                true,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T02:59:59+02:00",
                true,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T02:00:00+01:00",
                true,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T02:59:59+01:00",
                true,
            ),
            (
                "02:00-03:00 Europe/Berlin",
                "2026-10-25T03:00:00+01:00",
                false,
            ),
            // An end in the fold closes at its first occurrence and does not reopen.
            (
                "01:00-02:30 Europe/Berlin",
                "2026-10-25T02:29:59+02:00",
                true,
            ),
            (
                "01:00-02:30 Europe/Berlin",
                "2026-10-25T02:30:00+02:00",
                false,
            ),
            (
                "01:00-02:30 Europe/Berlin",
                "2026-10-25T02:00:00+01:00",
                false,
            ),
            (
                "01:00-02:30 Europe/Berlin",
                "2026-10-25T02:29:59+01:00",
                false,
            ),
            // A start in the fold opens at its first occurrence.
            (
                "02:30-04:00 Europe/Berlin",
                "2026-10-25T02:29:59+02:00",
                false,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-10-25T02:30:00+02:00",
                true,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-10-25T02:10:00+01:00",
                true,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-10-25T03:59:59+01:00",
                true,
            ),
            (
                "02:30-04:00 Europe/Berlin",
                "2026-10-25T04:00:00+01:00",
                false,
            ),
        ]);
        let w = window("02:00-03:00 Europe/Berlin");
        assert_eq!(
            w.closes_at(t("2026-10-25T02:30:00+02:00")),
            Some(t("2026-10-25T03:00:00+01:00"))
        );
        assert_eq!(
            w.next_open(t("2026-10-25T00:00:00+02:00")),
            t("2026-10-25T02:00:00+02:00")
        );
    }

    #[test]
    fn next_open() {
        let cases: &[(&str, &str, &str)] = &[
            // Inside: now.
            (
                "02:00-04:00",
                "2026-01-05T03:00:00Z",
                "2026-01-05T03:00:00Z",
            ),
            (
                "02:00-04:00",
                "2026-01-05T02:00:00Z",
                "2026-01-05T02:00:00Z",
            ),
            (
                "22:00-06:00",
                "2026-01-06T05:59:59Z",
                "2026-01-06T05:59:59Z",
            ),
            // Before: today's start.
            (
                "02:00-04:00",
                "2026-01-05T01:00:00Z",
                "2026-01-05T02:00:00Z",
            ),
            (
                "02:00-04:00",
                "2026-01-05T01:59:59Z",
                "2026-01-05T02:00:00Z",
            ),
            // After, or at the end: tomorrow's start.
            (
                "02:00-04:00",
                "2026-01-05T04:00:00Z",
                "2026-01-06T02:00:00Z",
            ),
            (
                "02:00-04:00",
                "2026-01-05T23:00:00Z",
                "2026-01-06T02:00:00Z",
            ),
            (
                "22:00-06:00",
                "2026-01-06T06:00:00Z",
                "2026-01-06T22:00:00Z",
            ),
            // Over a week gap: asked on Tuesday, next Monday.
            (
                "Mon 02:00-03:00",
                "2026-01-06T12:00:00Z",
                "2026-01-12T02:00:00Z",
            ),
            (
                "Mon 02:00-03:00",
                "2026-01-05T03:00:00Z",
                "2026-01-12T02:00:00Z",
            ),
            (
                "Mon 02:00-03:00",
                "2026-01-04T23:00:00Z",
                "2026-01-05T02:00:00Z",
            ),
            // Friday night's window, asked on Saturday after it closed.
            (
                "Fri 22:00-06:00",
                "2026-01-10T06:00:00Z",
                "2026-01-16T22:00:00Z",
            ),
            // Days in the list.
            (
                "Mon,Wed-Fri 09:30-10:00 UTC",
                "2026-01-05T10:00:00Z",
                "2026-01-07T09:30:00Z",
            ),
            (
                "Mon,Wed-Fri 09:30-10:00 UTC",
                "2026-01-09T10:00:00Z",
                "2026-01-12T09:30:00Z",
            ),
            (
                "Fri-Mon 01:00-02:00",
                "2026-01-12T02:00:00Z",
                "2026-01-16T01:00:00Z",
            ),
            // In the zone, across the spring change: Monday 22:00 CET to Monday 22:00 CEST.
            (
                "Mon 22:00-06:00 Europe/Berlin",
                "2026-03-24T12:00:00+01:00",
                "2026-03-30T22:00:00+02:00",
            ),
        ];
        for &(text, at, expected) in cases {
            assert_eq!(
                window(text).next_open(t(at)),
                t(expected),
                "{text:?} asked at {at}"
            );
        }
    }

    #[test]
    fn closes_at() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            (
                "02:00-04:00",
                "2026-01-05T02:00:00Z",
                Some("2026-01-05T04:00:00Z"),
            ),
            ("02:00-04:00", "2026-01-05T04:00:00Z", None),
            (
                "Fri 22:00-06:00",
                "2026-01-09T23:00:00Z",
                Some("2026-01-10T06:00:00Z"),
            ),
            (
                "Fri 22:00-06:00",
                "2026-01-10T05:00:00Z",
                Some("2026-01-10T06:00:00Z"),
            ),
            ("Fri 22:00-06:00", "2026-01-10T07:00:00Z", None),
            (
                "00:00-24:00",
                "2026-01-05T12:00:00Z",
                Some("2026-01-06T00:00:00Z"),
            ),
            (
                "Mon-Fri 22:00-06:00 Europe/Berlin",
                "2026-07-06T23:00:00+02:00",
                Some("2026-07-07T06:00:00+02:00"),
            ),
        ];
        for &(text, at, expected) in cases {
            assert_eq!(
                window(text).closes_at(t(at)),
                expected.map(t),
                "{text:?} asked at {at}"
            );
        }
    }

    #[test]
    fn unrepresentable_instants() {
        let w = window("02:00-04:00");
        for at in [i64::MIN, i64::MAX] {
            assert!(!w.is_open(at));
            assert_eq!(w.closes_at(at), None);
            assert_eq!(w.next_open(at), i64::MAX);
        }
        // The last representable day still answers.
        assert!(w.is_open(t("9999-12-30T03:00:00Z")));
    }

    #[test]
    fn zones_come_from_the_bundled_database() {
        // Lookups are case-insensitive and independent of /usr/share/zoneinfo.
        for name in [
            "Europe/Berlin",
            "america/new_york",
            "Asia/Kolkata",
            "Etc/GMT-5",
        ] {
            assert!(TZDB.get(name).is_ok(), "{name}");
        }
        let w = window("09:00-10:00 Asia/Kolkata");
        assert!(w.is_open(t("2026-01-05T03:30:00Z")));
        assert!(!w.is_open(t("2026-01-05T04:30:00Z")));
    }
}
