//! What the tray shows, as pure functions of what the router said: the fleet's
//! health ([`FleetHealth::from_nodes`]), the icon's colour and picture
//! ([`icon_colour`], [`icon_rgba`]), the tooltip, and which menu entries exist and are
//! enabled ([`menu`]). The platform shell (`app.rs`, Windows and macOS only) only
//! draws these and carries out the chosen [`Action`].

use herd_api::Node;

/// The fleet as one glance shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetHealth {
    /// The router answered and every node is Ready.
    AllReady { nodes: usize },
    /// The router answered; some nodes are not Ready (or there are none).
    Degraded { ready: usize, nodes: usize },
    /// The router did not answer (or refused the key).
    Unreachable { reason: String },
}

impl FleetHealth {
    /// From a node list, or the error listing them gave.
    pub fn from_nodes<E: std::fmt::Display>(listed: Result<&[Node], E>) -> FleetHealth {
        match listed {
            Err(e) => FleetHealth::Unreachable {
                reason: e.to_string(),
            },
            Ok(nodes) => {
                let ready = nodes.iter().filter(|n| n.is_ready()).count();
                if ready == nodes.len() && !nodes.is_empty() {
                    FleetHealth::AllReady { nodes: ready }
                } else {
                    FleetHealth::Degraded {
                        ready,
                        nodes: nodes.len(),
                    }
                }
            }
        }
    }
}

/// Red, green, blue.
pub type Rgb = [u8; 3];

pub const GREEN: Rgb = [0x2e, 0xa0, 0x43];
pub const AMBER: Rgb = [0xd2, 0x99, 0x22];
pub const RED: Rgb = [0xcf, 0x22, 0x2e];

/// Green when all nodes are Ready, amber when some are not, red when the router
/// cannot be reached.
pub fn icon_colour(health: &FleetHealth) -> Rgb {
    match health {
        FleetHealth::AllReady { .. } => GREEN,
        FleetHealth::Degraded { .. } => AMBER,
        FleetHealth::Unreachable { .. } => RED,
    }
}

/// A `size`×`size` RGBA picture: a filled disc of `colour` on transparency, with a
/// one-pixel darker rim so it reads on light and dark task bars alike.
pub fn icon_rgba(colour: Rgb, size: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((size * size * 4) as usize);
    let centre = (size as f32 - 1.0) / 2.0;
    let radius = size as f32 / 2.0 - 0.5;
    let rim = colour.map(|c| c / 2);
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 - centre).powi(2) + (y as f32 - centre).powi(2)).sqrt();
            let (rgb, alpha) = if d > radius {
                ([0, 0, 0], 0)
            } else if d > radius - 1.5 {
                (rim, 255)
            } else {
                (colour, 255)
            };
            pixels.extend_from_slice(&[rgb[0], rgb[1], rgb[2], alpha]);
        }
    }
    pixels
}

/// The tooltip.
pub fn tooltip(health: &FleetHealth, router: &str) -> String {
    match health {
        FleetHealth::AllReady { nodes } => {
            format!("herd: {nodes} of {nodes} nodes Ready ({router})")
        }
        FleetHealth::Degraded { ready, nodes } => {
            format!("herd: {ready} of {nodes} nodes Ready ({router})")
        }
        FleetHealth::Unreachable { reason } => {
            // Tooltips are short on every platform (128 characters on Windows).
            let reason: String = reason.chars().take(80).collect();
            format!("herd: router unreachable: {reason}")
        }
    }
}

/// What a menu entry does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    OpenDashboard,
    Cordon,
    Uncordon,
    StartNodelet,
    StopNodelet,
    Quit,
}

impl Action {
    /// A stable id for the platform menu.
    pub fn id(self) -> &'static str {
        match self {
            Action::OpenDashboard => "dashboard",
            Action::Cordon => "cordon",
            Action::Uncordon => "uncordon",
            Action::StartNodelet => "nodelet-start",
            Action::StopNodelet => "nodelet-stop",
            Action::Quit => "quit",
        }
    }

    pub fn from_id(id: &str) -> Option<Action> {
        [
            Action::OpenDashboard,
            Action::Cordon,
            Action::Uncordon,
            Action::StartNodelet,
            Action::StopNodelet,
            Action::Quit,
        ]
        .into_iter()
        .find(|a| a.id() == id)
    }
}

/// One menu entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntry {
    pub action: Action,
    pub label: String,
    pub enabled: bool,
}

/// What the menu knows about this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThisMachine {
    /// This machine's node name.
    pub node: String,
    /// Its node as the router has it; `None` when it is not registered (or the router
    /// is unreachable).
    pub cordoned: Option<bool>,
    /// Whether the nodelet the tray started is running.
    pub nodelet_running: bool,
    /// Whether the CLI's configuration has a key that may cordon (an admin key).
    pub may_cordon: bool,
}

/// The menu: the dashboard; cordon or uncordon this machine (whichever applies, only
/// when the router knows it and the key may); start or stop this machine's nodelet;
/// quit.
pub fn menu(health: &FleetHealth, machine: &ThisMachine) -> Vec<MenuEntry> {
    let reachable = !matches!(health, FleetHealth::Unreachable { .. });
    let entry = |action, label: String, enabled| MenuEntry {
        action,
        label,
        enabled,
    };
    let mut entries = vec![entry(
        Action::OpenDashboard,
        "Open dashboard".into(),
        reachable,
    )];
    let can_cordon = reachable && machine.may_cordon;
    match machine.cordoned {
        Some(true) => entries.push(entry(
            Action::Uncordon,
            format!("Uncordon {}", machine.node),
            can_cordon,
        )),
        Some(false) => entries.push(entry(
            Action::Cordon,
            format!("Cordon {}", machine.node),
            can_cordon,
        )),
        None => entries.push(entry(
            Action::Cordon,
            format!("Cordon {} (not registered)", machine.node),
            false,
        )),
    }
    if machine.nodelet_running {
        entries.push(entry(
            Action::StopNodelet,
            "Stop this machine's nodelet".into(),
            true,
        ));
    } else {
        entries.push(entry(
            Action::StartNodelet,
            "Start this machine's nodelet".into(),
            true,
        ));
    }
    entries.push(entry(Action::Quit, "Quit".into(), true));
    entries
}

/// The node named `name` in a list: whether it is cordoned.
pub fn cordoned(nodes: &[Node], name: &str) -> Option<bool> {
    nodes
        .iter()
        .find(|n| n.metadata.name == name)
        .map(|n| n.spec.unschedulable)
}

#[cfg(test)]
mod tests {
    use herd_api::{Condition, ConditionStatus, NodeSpec, Resource as _};

    use super::*;

    fn node(name: &str, ready: bool, unschedulable: bool) -> Node {
        let mut node = Node::new(name, NodeSpec::default());
        node.spec.unschedulable = unschedulable;
        node.status.conditions = vec![Condition {
            type_: herd_api::conditions::READY.to_owned(),
            status: if ready {
                ConditionStatus::True
            } else {
                ConditionStatus::False
            },
            reason: String::new(),
            message: String::new(),
            last_transition_time: None,
        }];
        node
    }

    #[test]
    fn health_colour_and_tooltip_table() {
        let a = node("a", true, false);
        let b = node("b", false, false);
        type Case = (
            Result<Vec<Node>, &'static str>,
            FleetHealth,
            Rgb,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (
                Ok(vec![a.clone()]),
                FleetHealth::AllReady { nodes: 1 },
                GREEN,
                "1 of 1 nodes Ready",
            ),
            (
                Ok(vec![a.clone(), b.clone()]),
                FleetHealth::Degraded { ready: 1, nodes: 2 },
                AMBER,
                "1 of 2 nodes Ready",
            ),
            (
                Ok(vec![]),
                FleetHealth::Degraded { ready: 0, nodes: 0 },
                AMBER,
                "0 of 0",
            ),
            (
                Err("connection refused"),
                FleetHealth::Unreachable {
                    reason: "connection refused".into(),
                },
                RED,
                "unreachable: connection refused",
            ),
        ];
        for (listed, want, colour, tip) in cases {
            let health = FleetHealth::from_nodes(listed.as_deref());
            assert_eq!(health, want);
            assert_eq!(icon_colour(&health), colour);
            let t = tooltip(&health, "http://localhost:8080");
            assert!(t.contains(tip), "{t}");
            assert!(t.chars().count() <= 127, "{t}");
        }
        let long = FleetHealth::Unreachable {
            reason: "x".repeat(500),
        };
        assert!(tooltip(&long, "r").chars().count() <= 127);
    }

    #[test]
    fn icon_is_a_disc_of_the_colour() {
        let size = 32;
        let px = icon_rgba(RED, size);
        assert_eq!(px.len(), (size * size * 4) as usize);
        let at = |x: u32, y: u32| &px[((y * size + x) * 4) as usize..][..4];
        assert_eq!(at(0, 0)[3], 0, "corners are transparent");
        assert_eq!(
            at(16, 16),
            &[RED[0], RED[1], RED[2], 255],
            "the centre is the colour"
        );
        assert_eq!(at(16, 1)[3], 255, "the rim is opaque");
        assert_ne!(&at(16, 1)[..3], &RED[..], "the rim is darker");
    }

    #[test]
    fn menu_table() {
        let machine = |cordoned, running, may| ThisMachine {
            node: "gpu-1".into(),
            cordoned,
            nodelet_running: running,
            may_cordon: may,
        };
        let up = FleetHealth::AllReady { nodes: 1 };
        let down = FleetHealth::Unreachable { reason: "x".into() };
        // (health, machine, expected (action, enabled) in order)
        let cases = [
            (
                &up,
                machine(Some(false), true, true),
                vec![
                    (Action::OpenDashboard, true),
                    (Action::Cordon, true),
                    (Action::StopNodelet, true),
                    (Action::Quit, true),
                ],
            ),
            (
                &up,
                machine(Some(true), false, true),
                vec![
                    (Action::OpenDashboard, true),
                    (Action::Uncordon, true),
                    (Action::StartNodelet, true),
                    (Action::Quit, true),
                ],
            ),
            (
                &up,
                machine(Some(false), true, false),
                vec![
                    (Action::OpenDashboard, true),
                    (Action::Cordon, false),
                    (Action::StopNodelet, true),
                    (Action::Quit, true),
                ],
            ),
            (
                &up,
                machine(None, false, true),
                vec![
                    (Action::OpenDashboard, true),
                    (Action::Cordon, false),
                    (Action::StartNodelet, true),
                    (Action::Quit, true),
                ],
            ),
            (
                &down,
                machine(Some(false), true, true),
                vec![
                    (Action::OpenDashboard, false),
                    (Action::Cordon, false),
                    (Action::StopNodelet, true),
                    (Action::Quit, true),
                ],
            ),
        ];
        for (health, machine, expected) in cases {
            let got: Vec<_> = menu(health, &machine)
                .into_iter()
                .map(|e| (e.action, e.enabled))
                .collect();
            assert_eq!(got, expected, "{health:?} {machine:?}");
        }
        for entry in menu(&up, &machine(Some(false), true, true)) {
            assert_eq!(Action::from_id(entry.action.id()), Some(entry.action));
        }
        assert_eq!(Action::from_id("nope"), None);
    }

    #[test]
    fn cordoned_finds_this_machine() {
        let nodes = [node("a", true, false), node("b", true, true)];
        assert_eq!(cordoned(&nodes, "a"), Some(false));
        assert_eq!(cordoned(&nodes, "b"), Some(true));
        assert_eq!(cordoned(&nodes, "c"), None);
    }
}
