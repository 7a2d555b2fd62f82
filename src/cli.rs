//! Command-line interface: flags defined once, lowered into actions.
pub fn main() -> i32 {
    0
}
