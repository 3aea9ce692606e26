//! Streaming properties every indicator must have: kernels of one spec share no state, and
//! `reset` returns a kernel to its initial state, and a saved and loaded kernel goes on as
//! the original does.

mod support;

use marketflow_operators::indicators::Indicator;
use marketflow_operators::Calendar;
use proptest::prelude::*;

fn one_at_a_time(
    kernel: &mut dyn Indicator,
    bars: &[marketflow_operators::Bar],
) -> Vec<(usize, [f64; marketflow_operators::record::MAX_OUTPUTS])> {
    bars.iter()
        .enumerate()
        .filter_map(|(i, b)| kernel.update(b).map(|v| (i, v)))
        .collect()
}

fn same(
    a: &[(usize, [f64; marketflow_operators::record::MAX_OUTPUTS])],
    b: &[(usize, [f64; marketflow_operators::record::MAX_OUTPUTS])],
) -> bool {
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
    fn kernels_of_one_spec_are_independent(offset in 1usize..400, take in 50usize..400) {
        // Two kernels fed different series, updates interleaved, give each the values it
        // gives alone: no state is shared between instances (statics, caches).
        let bars = support::bars();
        let first = &bars[..take];
        let second = &bars[offset..offset + take];
        for case in support::cases() {
            let alone_first = one_at_a_time(case.spec.build(&Calendar::Utc).as_mut(), first);
            let alone_second = one_at_a_time(case.spec.build(&Calendar::Utc).as_mut(), second);
            let mut a = case.spec.build(&Calendar::Utc);
            let mut b = case.spec.build(&Calendar::Utc);
            let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
            for (i, (x, y)) in first.iter().zip(second).enumerate() {
                if let Some(v) = a.update(x) {
                    got_a.push((i, v));
                }
                if let Some(v) = b.update(y) {
                    got_b.push((i, v));
                }
            }
            prop_assert!(same(&alone_first, &got_a), "{}: interleaving changed the first kernel", case.id);
            prop_assert!(same(&alone_second, &got_b), "{}: interleaving changed the second kernel", case.id);
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

    #[test]
    fn a_saved_and_loaded_kernel_continues_bit_for_bit(cut in 0usize..800) {
        // A checkpoint: the state saved after any prefix, loaded into a new kernel, gives
        // exactly the values the original gives on the rest.
        let bars = support::bars();
        let (prefix, rest) = bars.split_at(cut.min(bars.len()));
        for case in support::cases() {
            let mut original = case.spec.build(&Calendar::Utc);
            one_at_a_time(original.as_mut(), prefix);
            let mut loaded = case.spec.build(&Calendar::Utc);
            loaded.load(&original.save()).unwrap_or_else(|e| panic!("{}: {e}", case.id));
            let expected = one_at_a_time(original.as_mut(), rest);
            let got = one_at_a_time(loaded.as_mut(), rest);
            prop_assert!(same(&expected, &got), "{}: the loaded kernel differs after {cut} bars", case.id);
        }
    }
}
