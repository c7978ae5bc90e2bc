//! Which regions stand in for a region without capacity, nearest first.

use std::collections::HashMap;

/// Each region's neighbours, nearest first. A region not listed falls back to every
/// other known region in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regions {
    nearest: HashMap<String, Vec<String>>,
}

impl Regions {
    pub fn new(nearest: HashMap<String, Vec<String>>) -> Self {
        Self { nearest }
    }

    /// Parses `eu-west=eu-central,us-east;us-east=us-west,eu-west`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut nearest = HashMap::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let (region, neighbours) = entry
                .split_once('=')
                .ok_or_else(|| format!("`{entry}`: expected region=nearest,next,…"))?;
            let region = region.trim();
            if region.is_empty() {
                return Err(format!("`{entry}`: the region name is empty"));
            }
            let neighbours: Vec<String> = neighbours
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect();
            if nearest.insert(region.to_owned(), neighbours).is_some() {
                return Err(format!("region `{region}` is listed twice"));
            }
        }
        Ok(Self { nearest })
    }

    /// `region`, its listed neighbours, then the rest of `known` (each once).
    pub fn search_order(&self, region: &str, known: Vec<String>) -> Vec<String> {
        let mut order = vec![region.to_owned()];
        let listed = self.nearest.get(region).into_iter().flatten().cloned();
        for candidate in listed.chain(known) {
            if !order.contains(&candidate) {
                order.push(candidate);
            }
        }
        order
    }
}
