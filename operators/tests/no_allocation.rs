//! Indicator updates never allocate once a kernel is built: a counting global allocator
//! watches 10,000 updates of every kernel.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use marketflow_operators::{BarBuilder, Calendar, Interval, Tick};

struct Counting;

thread_local! {
    /// Allocations made by this thread (tests run on several threads at once).
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn indicator_updates_do_not_allocate() {
    let bars = support::bars();
    for case in support::cases() {
        let mut kernel = case.spec.build(&Calendar::Utc);
        for bar in &bars[..300] {
            kernel.update(bar);
        }
        let before = allocations();
        let mut checksum = 0.0;
        for _ in 0..11 {
            for bar in &bars[300..1200] {
                if let Some(v) = kernel.update(bar) {
                    checksum += v[0];
                }
            }
        }
        let after = allocations();
        assert_eq!(
            after - before,
            0,
            "{} allocated {} times in steady state",
            case.id,
            after - before
        );
        assert!(checksum.is_finite() || case.id.is_empty());
    }
}

#[test]
fn bar_building_does_not_allocate_in_steady_state() {
    let symbols: Vec<_> = (0..50)
        .map(|i| marketflow_operators::Symbol::new(&format!("S{i}")).unwrap())
        .collect();
    let mut builder = BarBuilder::new(Interval::M1, Calendar::Utc);
    let mut out = 0;
    let mut run = |minutes: std::ops::Range<i64>, builder: &mut BarBuilder| {
        for m in minutes {
            for s in 0..600 {
                let ts = m * 60_000 + s * 100;
                let tick = Tick {
                    symbol: symbols[(s % 50) as usize].clone(),
                    ts,
                    price: 100.0,
                    volume: 1.0,
                    seq: s as u64,
                    wm: ts,
                };
                builder.push(&tick);
            }
            builder.close_until(m * 60_000, |_, bars| out += bars.len());
        }
    };
    // Warm up: the window maps and output buffers reach their working size.
    run(0..20, &mut builder);
    let before = allocations();
    run(20..40, &mut builder);
    let allocations = allocations() - before;
    // One output vector per closed window is handed to the dataflow; nothing per tick.
    assert!(
        allocations <= 20,
        "{allocations} allocations for 20 windows of 600 ticks"
    );
    assert!(out > 0);
}
