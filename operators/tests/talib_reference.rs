//! Every indicator against TA-Lib's values on a committed 1200-bar series
//! (regenerate with `scripts/gen_indicator_fixtures.py`).

mod support;

use marketflow_operators::Calendar;

#[test]
fn indicators_match_talib() {
    let bars = support::bars();
    let cases = support::cases();
    assert!(cases.len() >= 16, "fixture cases are missing");
    let mut checked = Vec::new();
    for case in &cases {
        assert_eq!(
            case.spec.id(),
            case.id,
            "the generated id follows the fixture name"
        );
        assert_eq!(
            case.spec.kind().outputs(),
            case.outputs
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .as_slice(),
            "{}",
            case.id
        );
        case.spec
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", case.id));
        let mut kernel = case.spec.build(&Calendar::Utc);
        let got: Vec<(usize, [f64; marketflow_operators::record::MAX_OUTPUTS])> = bars
            .iter()
            .enumerate()
            .filter_map(|(i, bar)| kernel.update(bar).map(|v| (i, v)))
            .collect();
        let first = case.expected.first().map(|e| e.0).unwrap();
        assert_eq!(
            got.first().map(|g| g.0),
            Some(first),
            "{}: first emitted index",
            case.id
        );
        if case.id != "vwap" {
            assert_eq!(
                kernel.lookback(),
                first,
                "{}: lookback is TA-Lib's",
                case.id
            );
        }
        assert_eq!(
            got.len(),
            case.expected.len(),
            "{}: number of values",
            case.id
        );
        let mut worst = 0.0f64;
        for ((index, values), (expected_index, expected)) in got.iter().zip(&case.expected) {
            assert_eq!(index, expected_index, "{}", case.id);
            for (k, want) in expected.iter().enumerate() {
                let error = (values[k] - want).abs() / want.abs().max(1.0);
                worst = worst.max(error);
                assert!(
                    error <= 1e-9,
                    "{} bar {index} {}: got {} want {want}",
                    case.id,
                    case.outputs[k],
                    values[k]
                );
            }
        }
        checked.push(format!(
            "{} (first at {first}, max rel err {worst:.1e})",
            case.id
        ));
    }
    eprintln!("checked against TA-Lib:\n  {}", checked.join("\n  "));
}
