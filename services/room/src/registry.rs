//! The SFUs rooms can be placed on. A fixed list here (`--sfu` flags, or the
//! in-process SFU of `confer dev`); discovery through Consul replaces it in the
//! operator's deployments.

use crate::error::{RoomError, RoomResult};
use crate::model::Placement;

/// One SFU: its id, region and control API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SfuNode {
    pub id: String,
    pub region: String,
    pub control: String,
}

impl SfuNode {
    /// Parses `id@region=host:port`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (name, control) = spec
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: expected id@region=host:port"))?;
        let (id, region) = name
            .split_once('@')
            .ok_or_else(|| format!("`{spec}`: expected id@region=host:port"))?;
        if id.is_empty() || region.is_empty() || control.is_empty() {
            return Err(format!(
                "`{spec}`: id, region and address must be non-empty"
            ));
        }
        Ok(Self {
            id: id.to_owned(),
            region: region.to_owned(),
            control: control.to_owned(),
        })
    }

    pub fn placement(&self) -> Placement {
        Placement {
            region: self.region.clone(),
            sfu: self.id.clone(),
            control: self.control.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SfuRegistry {
    nodes: Vec<SfuNode>,
}

impl SfuRegistry {
    pub fn new(nodes: Vec<SfuNode>) -> Self {
        Self { nodes }
    }

    /// Nodes in `region`; when it has none, every node (nearest-region fallback comes
    /// with discovery).
    pub fn candidates(&self, region: &str) -> RoomResult<Vec<&SfuNode>> {
        let local: Vec<&SfuNode> = self.nodes.iter().filter(|n| n.region == region).collect();
        let candidates = if local.is_empty() {
            self.nodes.iter().collect()
        } else {
            local
        };
        if candidates.is_empty() {
            return Err(RoomError::new(
                crate::error::ErrorKind::Unavailable,
                "no_media_server",
                "no SFU is available to place this room on",
            ));
        }
        Ok(candidates)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_specs_parse() {
        let node = SfuNode::parse("sfu-a@eu=10.0.0.1:7881").expect("parses");
        assert_eq!(node.id, "sfu-a");
        assert_eq!(node.region, "eu");
        assert_eq!(node.control, "10.0.0.1:7881");
        assert!(SfuNode::parse("sfu-a=10.0.0.1:7881").is_err());
        assert!(SfuNode::parse("@eu=x").is_err());
    }

    #[test]
    fn regions_fall_back_to_every_node() {
        let registry = SfuRegistry::new(vec![
            SfuNode::parse("a@eu=x:1").expect("a"),
            SfuNode::parse("b@us=y:1").expect("b"),
        ]);
        assert_eq!(registry.candidates("eu").expect("eu").len(), 1);
        assert_eq!(registry.candidates("ap").expect("ap").len(), 2);
        assert!(SfuRegistry::default().candidates("eu").is_err());
    }
}
