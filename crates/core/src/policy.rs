//! Cedar policy evaluation. (Being written.)
