//! Masking of result rows in flight: a plan per RowDescription (which columns to check and
//! how, resolved to source tables through the catalog), applied to each DataRow without
//! buffering the result. Row and column counts never change.

use crate::catalog::{encode_row_description, parse_row_description, Catalog};
use bytes::Bytes;
use std::sync::Arc;
use crate::views::{view_masking, view_misuse, ViewMasking};
use warden_mask::{ColumnPlan, Format, MaskCounts, Masker};

pub struct ResultMasking {
    pub masker: Arc<Masker>,
    pub catalog: Arc<Catalog>,
}

/// How to mask the rows of one result.
#[derive(Debug)]
pub struct RowPlan {
    plans: Vec<ColumnPlan>,
    /// The RowDescription to send instead of the upstream's, when a masked column can no
    /// longer be announced with its original type.
    pub description: Option<Bytes>,
    passthrough: bool,
}

impl ResultMasking {
    /// Plans a result. Errors (a malformed description, an unreadable catalog) mean the rows
    /// cannot be checked: the caller must not forward them.
    pub async fn plan(&self, description: &Bytes) -> Result<RowPlan, String> {
        let mut fields = parse_row_description(description).ok_or("malformed RowDescription")?;
        let mut plans = Vec::with_capacity(fields.len());
        let mut changed = false;
        for f in &mut fields {
            let format = Format::from_code(f.format).ok_or("unknown result format code")?;
            let origin = if f.table_oid != 0 && f.attnum > 0 {
                let table = self.catalog.table(f.table_oid).await.map_err(|e| format!("cannot read the catalog to mask results: {e}"))?;
                let column = table.columns.get(&f.attnum).cloned().unwrap_or_else(|| f.name.clone());
                if table.is_view {
                    match view_masking(&self.masker, &self.catalog, f.table_oid, 0).await.map_err(|e| format!("cannot read the catalog to mask results: {e}"))? {
                        // Statements reading such a view are refused before they run; one
                        // that got here raced a change of the view.
                        ViewMasking::Opaque(what) => return Err(format!("view {} derives from masked column {what}", table.table)),
                        ViewMasking::Follows(map) => Some(map.get(&column).cloned().unwrap_or((table.table.clone(), column))),
                    }
                } else {
                    Some((table.table.clone(), column))
                }
            } else {
                None
            };
            let plan = match &origin {
                Some((table, column)) => self.masker.column_plan(Some(table), column, f.type_oid, format),
                None => self.masker.column_plan(None, &f.name, f.type_oid, format),
            };
            if plan.output_type_oid() != f.type_oid {
                f.type_oid = plan.output_type_oid();
                f.type_size = -1;
                f.type_modifier = -1;
                changed = true;
            }
            plans.push(plan);
        }
        let passthrough = plans.iter().all(ColumnPlan::is_passthrough);
        Ok(RowPlan { plans, description: changed.then(|| encode_row_description(&fields)), passthrough })
    }

    /// Why this statement may not run with masked results because of the views it reads
    /// (see `crate::views`), if it may not. A catalog that cannot be read is a refusal too.
    pub async fn view_misuse(&self, sql: &str, tables: &[String]) -> Option<String> {
        view_misuse(&self.masker, &self.catalog, sql, tables).await.unwrap_or_else(|e| Some(format!("the views this statement reads cannot be checked for masked columns ({e})")))
    }

    /// The DataRow body to forward (None: unchanged) and what was masked.
    pub fn mask_row(&self, plan: &RowPlan, body: &Bytes) -> Result<(Option<Bytes>, MaskCounts), String> {
        if plan.passthrough {
            return Ok((None, MaskCounts::default()));
        }
        let (masked, counts) = self.masker.mask_data_row(&plan.plans, body).map_err(|e| e.to_string())?;
        let out = match masked {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(v) => Some(Bytes::from(v)),
        };
        Ok((out, counts))
    }
}
