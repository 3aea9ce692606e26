#!/usr/bin/env python3
"""Regenerates tests/fixtures/indicators/ from TA-Lib.

The Rust tests read the committed files and need no Python. Run after changing the
cases below:

    pip install TA-Lib numpy
    python3 scripts/gen_indicator_fixtures.py

bars.csv holds a seeded random walk of hourly bars with flat stretches (no movement,
high == low) so the zero-range branches of RSI, Stochastic, Williams %R and CCI are
exercised. Each case writes <id>.csv with the bar index and the outputs wherever TA-Lib
gives a value; cases.json lists the cases with their pipeline spec.
"""
import csv
import json
import math
import os

import numpy as np
import talib

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "indicators")
N = 1200
START_MS = 1_704_153_600_000  # 2024-01-02T00:00:00Z
HOUR_MS = 3_600_000


def make_bars():
    rng = np.random.default_rng(20240102)
    close = np.empty(N)
    price = 100.0
    for i in range(N):
        if 300 <= i < 330:  # a flat stretch: no movement at all
            close[i] = price
            continue
        price *= math.exp(rng.normal(0.0, 0.01))
        close[i] = round(price, 2)
        price = close[i]
    opens = np.empty(N)
    opens[0] = close[0]
    opens[1:] = close[:-1]
    spread = np.abs(rng.normal(0.0, 0.006, N)) * close
    high = np.round(np.maximum(opens, close) + spread, 2)
    low = np.round(np.minimum(opens, close) - np.abs(rng.normal(0.0, 0.006, N)) * close, 2)
    high[300:330] = close[300:330]
    low[300:330] = close[300:330]
    volume = rng.integers(1_000, 50_000, N).astype(float)
    volume[310:315] = 0.0
    w = rng.uniform(0.0, 1.0, N)
    vwap = low + (high - low) * w
    return opens, high, low, close, volume, vwap


def vwap_by_day(volume, vwap):
    out = np.full(N, np.nan)
    notional = 0.0
    vol = 0.0
    day = None
    for i in range(N):
        d = (START_MS + i * HOUR_MS) // 86_400_000
        if d != day:
            day, notional, vol = d, 0.0, 0.0
        notional += vwap[i] * volume[i]
        vol += volume[i]
        if vol > 0:
            out[i] = notional / vol
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    o, h, l, c, v, vw = make_bars()
    with open(os.path.join(OUT, "bars.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["start", "open", "high", "low", "close", "volume", "vwap"])
        for i in range(N):
            w.writerow([START_MS + i * HOUR_MS] + [repr(float(x[i])) for x in (o, h, l, c, v, vw)])

    cases = []

    def case(ident, spec, outputs, values):
        cases.append({"id": ident, "spec": spec, "outputs": outputs})
        cols = [np.asarray(x, dtype=float) for x in values]
        with open(os.path.join(OUT, ident + ".csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index"] + outputs)
            for i in range(N):
                row = [col[i] for col in cols]
                if all(not math.isnan(x) for x in row):
                    w.writerow([i] + [repr(float(x)) for x in row])

    hlc3 = (h + l + c) / 3.0
    for p in (2, 5, 20, 200):
        case(f"sma_{p}", {"sma": {"period": p}}, ["value"], [talib.SMA(c, p)])
        case(f"ema_{p}", {"ema": {"period": p}}, ["value"], [talib.EMA(c, p)])
        case(f"wma_{p}", {"wma": {"period": p}}, ["value"], [talib.WMA(c, p)])
    case("ema_12", {"ema": {"period": 12}}, ["value"], [talib.EMA(c, 12)])
    case("sma_20_hlc3", {"sma": {"period": 20, "source": "hlc3"}}, ["value"], [talib.SMA(hlc3, 20)])
    for p in (2, 14, 30):
        case(f"rsi_{p}", {"rsi": {"period": p}}, ["value"], [talib.RSI(c, p)])
    for fast, slow, sig in ((12, 26, 9), (5, 35, 5), (2, 3, 1)):
        m, s, hist = talib.MACD(c, fast, slow, sig)
        case(f"macd_{fast}_{slow}_{sig}", {"macd": {"fast": fast, "slow": slow, "signal": sig}}, ["macd", "signal", "hist"], [m, s, hist])
    for p, k in ((20, 2.0), (10, 1.5), (5, 1.0)):
        up, mid, lo = talib.BBANDS(c, p, k, k, 0)
        ident = f"bollinger_{p}_{k:g}"
        # Bandwidth and %b from the bands (the predecessor's definitions): 0.5 where they meet.
        width = up - lo
        bandwidth = np.where(mid != 0, width / np.where(mid != 0, mid, 1.0), 0.0)
        percent_b = np.where(width > 0, (c - lo) / np.where(width > 0, width, 1.0), 0.5)
        bandwidth[np.isnan(up)] = np.nan
        percent_b[np.isnan(up)] = np.nan
        case(ident, {"bollinger": {"period": p, "stddev": k}}, ["upper", "middle", "lower", "bandwidth", "percent_b"], [up, mid, lo, bandwidth, percent_b])
    for p in (1, 14, 30):
        case(f"atr_{p}", {"atr": {"period": p}}, ["value"], [talib.ATR(h, l, c, p)])
    for fk, sk, sd in ((14, 3, 3), (5, 3, 3), (1, 1, 1)):
        k_, d_ = talib.STOCH(h, l, c, fk, sk, 0, sd, 0)
        case(f"stochastic_{fk}_{sk}_{sd}", {"stochastic": {"k": fk, "k_smooth": sk, "d": sd}}, ["k", "d"], [k_, d_])
    for p, n in ((20, 1.0), (10, 2.0), (2, 1.0)):
        ident = f"stddev_{p}" if n == 1.0 else f"stddev_{p}_{n:g}"
        case(ident, {"stddev": {"period": p, "nbdev": n}}, ["value"], [talib.STDDEV(c, p, n)])
    case("vwap", {"vwap": {}}, ["value"], [vwap_by_day(v, vw)])
    for p in (14, 5):
        adx = talib.ADX(h, l, c, p)
        plus = talib.PLUS_DI(h, l, c, p)
        minus = talib.MINUS_DI(h, l, c, p)
        plus[np.isnan(adx)] = np.nan
        minus[np.isnan(adx)] = np.nan
        case(f"adx_{p}", {"adx": {"period": p}}, ["adx", "plus_di", "minus_di"], [adx, plus, minus])
    for p in (20, 14, 2):
        case(f"cci_{p}", {"cci": {"period": p}}, ["value"], [talib.CCI(h, l, c, p)])
    for p in (10, 1):
        case(f"roc_{p}", {"roc": {"period": p}}, ["value"], [talib.ROC(c, p)])
    for p in (14, 2):
        case(f"willr_{p}", {"willr": {"period": p}}, ["value"], [talib.WILLR(h, l, c, p)])
    case("obv", {"obv": {}}, ["value"], [talib.OBV(c, v)])
    for p, a, m in ((20, 10, 2.0), (10, 14, 1.5)):
        mid = talib.EMA(c, p)
        atr = talib.ATR(h, l, c, a)
        both = ~(np.isnan(mid) | np.isnan(atr))
        up = np.where(both, mid + m * atr, np.nan)
        lo = np.where(both, mid - m * atr, np.nan)
        mid = np.where(both, mid, np.nan)
        case(f"keltner_{p}_{a}_{m:g}", {"keltner": {"period": p, "atr_period": a, "multiplier": m}}, ["upper", "middle", "lower"], [up, mid, lo])

    for p, a, m in ((20, 14, 2.0),):
        mid = talib.SMA(c, p)
        atr = talib.ATR(h, l, c, a)
        both = ~(np.isnan(mid) | np.isnan(atr))
        up = np.where(both, mid + m * atr, np.nan)
        lo = np.where(both, mid - m * atr, np.nan)
        mid = np.where(both, mid, np.nan)
        case(f"keltner_{p}_{a}_{m:g}_sma", {"keltner": {"period": p, "atr_period": a, "multiplier": m, "middle": "sma"}}, ["upper", "middle", "lower"], [up, mid, lo])

    # Beyond the first sixteen: the predecessor's set and more of TA-Lib.
    for p in (10, 1):
        case(f"mom_{p}", {"mom": {"period": p}}, ["value"], [talib.MOM(c, p)])
    # (TA-Lib's NATR with period 1 returns the true range itself, not normalised: not used.)
    for p in (14, 2):
        case(f"natr_{p}", {"natr": {"period": p}}, ["value"], [talib.NATR(h, l, c, p)])
    for p in (14, 2):
        case(f"mfi_{p}", {"mfi": {"period": p}}, ["value"], [talib.MFI(h, l, c, v, p)])
    for acc, mx in ((0.02, 0.2), (0.05, 0.5)):
        case(f"sar_{acc:g}_{mx:g}", {"sar": {"acceleration": acc, "maximum": mx}}, ["value"], [talib.SAR(h, l, acc, mx)])
    for p in (14, 25, 2):
        down, up = talib.AROON(h, l, p)
        case(f"aroon_{p}", {"aroon": {"period": p}}, ["up", "down", "oscillator"], [up, down, talib.AROONOSC(h, l, p)])
    for p in (30, 10, 2):
        case(f"dema_{p}", {"dema": {"period": p}}, ["value"], [talib.DEMA(c, p)])
        case(f"tema_{p}", {"tema": {"period": p}}, ["value"], [talib.TEMA(c, p)])
        case(f"trix_{p}", {"trix": {"period": p}}, ["value"], [talib.TRIX(c, p)])
        case(f"kama_{p}", {"kama": {"period": p}}, ["value"], [talib.KAMA(c, p)])
    for fast, slow in ((12, 26), (3, 10)):
        case(f"ppo_{fast}_{slow}", {"ppo": {"fast": fast, "slow": slow}}, ["value"], [talib.PPO(c, fast, slow, 1)])
        case(f"ppo_{fast}_{slow}_sma", {"ppo": {"fast": fast, "slow": slow, "ma": "sma"}}, ["value"], [talib.PPO(c, fast, slow, 0)])
    for p in (14, 2):
        case(f"cmo_{p}", {"cmo": {"period": p}}, ["value"], [talib.CMO(c, p)])
    for a, b, d in ((7, 14, 28), (28, 7, 14), (1, 2, 3)):
        case(f"ultosc_{a}_{b}_{d}", {"ultosc": {"short": a, "medium": b, "long": d}}, ["value"], [talib.ULTOSC(h, l, c, a, b, d)])
    for p in (14, 5):
        case(f"adxr_{p}", {"adxr": {"period": p}}, ["value"], [talib.ADXR(h, l, c, p)])
    # Historical volatility has no TA-Lib function: from its definition, the population
    # deviation of the last `p` log returns, annualised for hourly bars on the UTC calendar
    # (24 a day, 365.25 days a year).
    for p in (20, 5):
        returns = np.full(N, np.nan)
        returns[1:] = np.log(c[1:] / c[:-1])
        hv = np.full(N, np.nan)
        for i in range(p, N):
            hv[i] = np.std(returns[i - p + 1 : i + 1]) * math.sqrt(24 * 365.25) * 100.0
        case(f"hist_vol_{p}", {"hist_vol": {"period": p}}, ["value"], [hv])

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"generator": "scripts/gen_indicator_fixtures.py", "talib": talib.__version__, "bars": N, "cases": cases}, f, indent=1)
    print(f"wrote {len(cases)} cases over {N} bars to {os.path.normpath(OUT)} (TA-Lib {talib.__version__})")


if __name__ == "__main__":
    main()
