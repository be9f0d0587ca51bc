//! String and number `format`s the API server checks for custom objects. Formats it does not
//! know are accepted without checking.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Number;

fn re(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

static DATE_TIME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(?:[Zz]|[+-]\d{2}:?\d{2})?$",
    )
});
static DATE: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"^(\d{4})-(\d{2})-(\d{2})$"));
static DURATION: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"^\s*[-+]?(?:\d+(?:\.\d+)?\s*(?:ns|us|µs|ms|s|sec|secs|seconds?|m|mins?|minutes?|h|hrs?|hours?|d|days?|w|wks?|weeks?)\s*)+$",
    )
});
static UUID: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?([0-9a-f])[0-9a-f]{3}-?([0-9a-f])[0-9a-f]{3}-?[0-9a-f]{12}$",
    )
});
static HOSTNAME: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(r"^(?i)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$")
});
static EMAIL: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^[^@\s]+@[^@\s]+\.[^@\s]+$|^[^@\s]+@[^@\s.]+$"));
static MAC: LazyLock<Option<Regex>> = LazyLock::new(|| {
    re(
        r"(?i)^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$|^([0-9a-f]{2}[:-]){7}[0-9a-f]{2}$|^([0-9a-f]{4}\.){2}[0-9a-f]{4}$",
    )
});
static HEX_COLOR: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"));
static RGB_COLOR: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^rgb\(\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*,\s*\d{1,3}%?\s*\)$"));
static BASE64: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"));
static BSON_ID: LazyLock<Option<Regex>> = LazyLock::new(|| re(r"(?i)^[0-9a-f]{24}$"));
static URI: LazyLock<Option<Regex>> =
    LazyLock::new(|| re(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:[^\s]*|/[^\s]*)$"));

fn matches(rx: &LazyLock<Option<Regex>>, s: &str) -> bool {
    rx.as_ref().is_none_or(|r| r.is_match(s))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

fn valid_ymd(caps: &regex::Captures<'_>) -> bool {
    let num = |i: usize| {
        caps.get(i)
            .and_then(|m| m.as_str().parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (year, month, day) = (num(1), num(2), num(3));
    (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month)
}

fn date_time(s: &str) -> bool {
    let Some(Some(caps)) = DATE_TIME.as_ref().map(|r| r.captures(s)) else {
        return false;
    };
    let num = |i: usize| {
        caps.get(i)
            .and_then(|m| m.as_str().parse::<u32>().ok())
            .unwrap_or(0)
    };
    valid_ymd(&caps) && num(4) < 24 && num(5) < 60 && num(6) < 61
}

fn date(s: &str) -> bool {
    DATE.as_ref()
        .and_then(|r| r.captures(s))
        .is_some_and(|c| valid_ymd(&c))
}

fn uuid(s: &str, version: Option<char>) -> bool {
    let Some(Some(caps)) = UUID.as_ref().map(|r| r.captures(s)) else {
        return false;
    };
    match version {
        None => true,
        Some(v) => {
            let ver = caps.get(1).map(|m| m.as_str());
            let variant = caps.get(2).map(|m| m.as_str().to_ascii_lowercase());
            ver == Some(&v.to_string()) && matches!(variant.as_deref(), Some("8" | "9" | "a" | "b"))
        }
    }
}

fn cidr(s: &str) -> bool {
    let Some((addr, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits <= 32,
        Ok(IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

/// Whether string `s` satisfies `format`; unknown formats always pass.
pub(crate) fn string_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => date_time(s),
        "date" => date(s),
        "duration" => matches(&DURATION, s),
        "byte" => matches(&BASE64, s),
        "uuid" => uuid(s, None),
        "uuid3" => uuid(s, Some('3')),
        "uuid4" => uuid(s, Some('4')),
        "uuid5" => uuid(s, Some('5')),
        "ipv4" => s.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => matches(&MAC, s),
        "hostname" => s.len() <= 253 && matches(&HOSTNAME, s),
        "email" => matches(&EMAIL, s),
        "uri" => matches(&URI, s),
        "hexcolor" => matches(&HEX_COLOR, s),
        "rgbcolor" => matches(&RGB_COLOR, s),
        "bsonobjectid" => matches(&BSON_ID, s),
        _ => true,
    }
}

/// Whether number `n` fits the integer `format` (`int32`, `int64`); other formats pass.
pub(crate) fn number_ok(format: &str, n: &Number) -> bool {
    match format {
        "int32" => match n.as_i64() {
            Some(i) => i32::try_from(i).is_ok(),
            None => n.as_f64().is_some_and(|f| {
                f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX)
            }),
        },
        "int64" => {
            n.is_i64()
                || n.as_f64().is_some_and(|f| {
                    f.fract() == 0.0
                        && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
                })
        }
        _ => true,
    }
}
