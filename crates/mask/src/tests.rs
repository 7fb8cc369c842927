use super::*;

pub(crate) fn masker() -> Masker {
    Masker::new(&MaskConfig::default()).unwrap()
}
