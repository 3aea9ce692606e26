//! Operator state for checkpoints: a compact binary form that keeps every `f64` bit for
//! bit (NaN included), so a restored kernel continues exactly as the saved one would.

/// A saved state that does not fit the kernel or window it is loaded into.
#[derive(Debug, thiserror::Error)]
#[error("a saved operator state does not fit: {0}")]
pub struct StateError(String);

pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing plain structs into memory cannot fail.
    bincode::serialize(value).unwrap_or_default()
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    bincode::deserialize(bytes).map_err(|e| StateError(e.to_string()))
}

/// `save` and `load` of a kernel whose whole state is its (serde) value.
#[macro_export]
macro_rules! state_methods {
    () => {
        fn save(&self) -> Vec<u8> {
            $crate::state::encode(self)
        }
        fn load(&mut self, state: &[u8]) -> Result<(), $crate::state::StateError> {
            *self = $crate::state::decode(state)?;
            Ok(())
        }
    };
}
