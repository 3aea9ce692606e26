//! Instrument symbols: short strings stored inline, so ticks carry no heap pointer.

use std::fmt;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

/// The longest symbol accepted, in bytes (OCC option symbols are 21).
pub const MAX_SYMBOL_LEN: usize = 32;

/// An instrument symbol such as `AAPL`, `EUR/USD` or `TATASTEEL:BSE`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Symbol(CompactString);

/// A symbol that is empty, too long or holds characters that cannot appear in one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid symbol `{0}`: expected 1 to 32 printable characters without spaces, commas or quotes"
)]
pub struct SymbolError(pub String);

impl Symbol {
    /// Checks and wraps `text`.
    pub fn new(text: &str) -> Result<Symbol, SymbolError> {
        let valid = !text.is_empty()
            && text.len() <= MAX_SYMBOL_LEN
            && text.chars().all(|c| {
                !c.is_whitespace() && !c.is_control() && !matches!(c, ',' | '"' | '\'' | '\\')
            });
        if valid {
            Ok(Symbol(CompactString::new(text)))
        } else {
            Err(SymbolError(text.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// A stable 64-bit hash (FNV-1a) deciding which worker owns the symbol; it must not
    /// depend on the process, so every process of a cluster routes a symbol alike.
    pub fn route_hash(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in self.0.as_bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // Mix the high bits down: timely routes by the low bits.
        hash ^ (hash >> 32)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::str::FromStr for Symbol {
    type Err = SymbolError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_symbols() {
        for s in [
            "AAPL",
            "EUR/USD",
            "BRK.B",
            "TATASTEEL:BSE",
            "^GSPC",
            "7203",
            "AAPL240119C00185000",
        ] {
            assert_eq!(Symbol::new(s).map(|x| x.to_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn rejects_junk() {
        for s in ["", "A B", "A,B", "\"A\"", "A\n", &"X".repeat(33)] {
            assert!(Symbol::new(s).is_err(), "{s:?}");
        }
    }
}
