//! Streaming properties every indicator must have: batches of any size give the values
//! of one-at-a-time updates, and `reset` returns a kernel to its initial state.

mod support;

use marketflow_operators::indicators::Indicator;
use marketflow_operators::Calendar;
use proptest::prelude::*;

fn one_at_a_time(
    kernel: &mut dyn Indicator,
    bars: &[marketflow_operators::Bar],
) -> Vec<(usize, [f64; 3])> {
    bars.iter()
        .enumerate()
        .filter_map(|(i, b)| kernel.update(b).map(|v| (i, v)))
        .collect()
}

fn same(a: &[(usize, [f64; 3])], b: &[(usize, [f64; 3])]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.0 == y.0
                && x.1
                    .iter()
                    .zip(&y.1)
                    .all(|(p, q)| p.to_bits() == q.to_bits())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn batches_give_the_same_values(cuts in proptest::collection::vec(1usize..200, 1..12), skip in 0usize..300) {
        let bars = support::bars();
        let bars = &bars[skip..];
        for case in support::cases() {
            let expected = one_at_a_time(case.spec.build(&Calendar::Utc).as_mut(), bars);
            let mut kernel = case.spec.build(&Calendar::Utc);
            let mut got = Vec::new();
            let mut at = 0;
            let mut cut = cuts.iter().cycle();
            while at < bars.len() {
                let end = (at + cut.next().copied().unwrap_or(1)).min(bars.len());
                let mut out = Vec::new();
                kernel.update_all(&bars[at..end], &mut out);
                got.extend(out.into_iter().map(|(i, v)| (i + at, v)));
                at = end;
            }
            prop_assert!(same(&expected, &got), "{}: batched values differ", case.id);
        }
    }

    #[test]
    fn reset_is_a_fresh_kernel(prefix in 0usize..600) {
        let bars = support::bars();
        for case in support::cases() {
            let mut kernel = case.spec.build(&Calendar::Utc);
            one_at_a_time(kernel.as_mut(), &bars[..prefix]);
            kernel.reset();
            let after_reset = one_at_a_time(kernel.as_mut(), &bars[600..]);
            let fresh = one_at_a_time(case.spec.build(&Calendar::Utc).as_mut(), &bars[600..]);
            prop_assert!(same(&after_reset, &fresh), "{}: reset differs from a fresh kernel", case.id);
        }
    }
}
