//! The TA-Lib fixture series, shared by the indicator tests.
#![allow(dead_code)]

use std::path::PathBuf;

use marketflow_operators::indicators::IndicatorSpec;
use marketflow_operators::{Bar, Fixed, Interval, Symbol};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/indicators")
}

/// The fixture bars (hourly, with volume and VWAP).
pub fn bars() -> Vec<Bar> {
    let text = std::fs::read_to_string(fixtures().join("bars.csv")).expect("fixture bars");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
            let start = f[0] as i64;
            Bar {
                symbol: Symbol::new("TEST").unwrap(),
                interval: Interval::parse("1h").unwrap(),
                start,
                end: start + 3_600_000,
                open: f[1],
                high: f[2],
                low: f[3],
                close: f[4],
                volume: Fixed::from_f64(f[5]),
                notional: Fixed::from_f64(f[6] * f[5]),
                trades: 1,
                revision: 0,
                seq: 0,
                wm: start + 3_599_999,
                source: Default::default(),
            }
        })
        .collect()
}

/// A case of `cases.json`: its id, spec and output names.
pub struct Case {
    pub id: String,
    pub spec: IndicatorSpec,
    pub outputs: Vec<String>,
    /// (bar index, values) where TA-Lib gives a value.
    pub expected: Vec<(usize, Vec<f64>)>,
}

pub fn cases() -> Vec<Case> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("cases.json")).unwrap())
            .unwrap();
    manifest["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["id"].as_str().unwrap().to_owned();
            let text = std::fs::read_to_string(fixtures().join(format!("{id}.csv"))).unwrap();
            let expected = text
                .lines()
                .skip(1)
                .map(|line| {
                    let mut fields = line.split(',');
                    let index = fields.next().unwrap().parse().unwrap();
                    (index, fields.map(|x| x.parse().unwrap()).collect())
                })
                .collect();
            Case {
                spec: serde_json::from_value(c["spec"].clone()).unwrap(),
                outputs: c["outputs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap().to_owned())
                    .collect(),
                id,
                expected,
            }
        })
        .collect()
}
