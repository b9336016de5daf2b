//! The tray icon on Windows and macOS (cargo feature `tray`): tao's event loop on the
//! main thread (macOS requires it there; Windows needs a message loop on the icon's
//! thread), a tokio thread that asks the router for the nodes every few seconds, and
//! the actions the menu offers. What is shown is decided in [`super::state`].

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use herd_api::Node;
use herd_client::{Client, ListParams};
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tray_icon::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use super::TrayArgs;
use super::state::{self, Action, FleetHealth, ThisMachine};
use crate::ctl::args::ConnectArgs;

const ICON_SIZE: u32 = 32;
const POLL: Duration = Duration::from_secs(5);
const MENU_POLL: Duration = Duration::from_millis(150);

enum UserEvent {
    Refresh(FleetHealth, Option<bool>),
    Menu(String),
    Done(String),
}

pub fn run(args: TrayArgs, connect: &ConnectArgs) -> anyhow::Result<()> {
    let client = connect.client()?;
    let router = connect.server.clone();
    let may_cordon = connect.token.is_some();
    let node_name = args
        .node
        .clone()
        .unwrap_or_else(herd_nodelet::config::default_node_name);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the tray's runtime")?;

    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    runtime.spawn(poll(client.clone(), node_name.clone(), proxy.clone()));

    let mut tray: Option<TrayIcon> = None;
    let mut health = FleetHealth::Unreachable {
        reason: "not asked yet".to_owned(),
    };
    let mut cordoned = None;
    let mut nodelet: Option<Child> = None;
    let menu = Menu::new();
    event_loop.run(move |event, _, control_flow| {
        // Menu clicks arrive on muda's channel; look at it a few times a second.
        *control_flow = ControlFlow::WaitUntil(Instant::now() + MENU_POLL);
        while let Ok(click) = MenuEvent::receiver().try_recv() {
            let _ = proxy.send_event(UserEvent::Menu(click.id().0.clone()));
        }
        let machine = |nodelet: &mut Option<Child>, cordoned| ThisMachine {
            node: node_name.clone(),
            cordoned,
            nodelet_running: nodelet
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None))),
            may_cordon,
        };
        match event {
            // macOS wants the icon made once the loop runs, not before.
            Event::NewEvents(StartCause::Init) => {
                fill_menu(
                    &menu,
                    &state::menu(&health, &machine(&mut nodelet, cordoned)),
                );
                match TrayIconBuilder::new()
                    .with_menu(Box::new(menu.clone()))
                    .with_tooltip(state::tooltip(&health, &router))
                    .with_icon(icon(&health))
                    .build()
                {
                    Ok(icon) => tray = Some(icon),
                    Err(e) => {
                        eprintln!("error: cannot show the tray icon: {e}");
                        *control_flow = ControlFlow::Exit;
                    }
                }
            }
            Event::UserEvent(UserEvent::Refresh(h, c)) => {
                health = h;
                cordoned = c;
                if let Some(tray) = &tray {
                    let _ = tray.set_icon(Some(icon(&health)));
                    let _ = tray.set_tooltip(Some(state::tooltip(&health, &router)));
                }
                fill_menu(
                    &menu,
                    &state::menu(&health, &machine(&mut nodelet, cordoned)),
                );
            }
            Event::UserEvent(UserEvent::Done(message)) => eprintln!("{message}"),
            Event::UserEvent(UserEvent::Menu(id)) => match Action::from_id(&id) {
                Some(Action::OpenDashboard) => {
                    open(&format!("{}/dashboard", router.trim_end_matches('/')))
                }
                Some(action @ (Action::Cordon | Action::Uncordon)) => {
                    let (client, node, proxy) = (client.clone(), node_name.clone(), proxy.clone());
                    runtime.spawn(async move {
                        let on = action == Action::Cordon;
                        let message =
                            match crate::cmd::cordon::set_unschedulable(&client, &node, on).await {
                                Ok(line) => line,
                                Err(e) => format!("error: {e}"),
                            };
                        let _ = proxy.send_event(UserEvent::Done(message));
                    });
                }
                Some(Action::StartNodelet) => match start_nodelet(&args.nodelet_args) {
                    Ok(child) => nodelet = Some(child),
                    Err(e) => eprintln!("error: {e:#}"),
                },
                Some(Action::StopNodelet) => stop_nodelet(&mut nodelet),
                Some(Action::Quit) => {
                    stop_nodelet(&mut nodelet);
                    tray = None;
                    *control_flow = ControlFlow::Exit;
                }
                None => {}
            },
            _ => {}
        }
    })
}

/// Asks the router for the nodes every [`POLL`] and sends what it found.
async fn poll(client: Client, node: String, proxy: EventLoopProxy<UserEvent>) {
    let nodes = client.api::<Node>();
    loop {
        let listed = nodes.list(&ListParams::default()).await;
        let items = listed.as_ref().map(|l| l.items.as_slice());
        let cordoned = items.ok().and_then(|n| state::cordoned(n, &node));
        let health = FleetHealth::from_nodes(items.map_err(|e| e.to_string()));
        if proxy
            .send_event(UserEvent::Refresh(health, cordoned))
            .is_err()
        {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

fn icon(health: &FleetHealth) -> Icon {
    let rgba = state::icon_rgba(state::icon_colour(health), ICON_SIZE);
    Icon::from_rgba(rgba, ICON_SIZE, ICON_SIZE).expect("a square RGBA picture of the stated size")
}

fn fill_menu(menu: &Menu, entries: &[state::MenuEntry]) {
    while menu.remove_at(0).is_some() {}
    for (i, entry) in entries.iter().enumerate() {
        if entry.action == Action::Quit && i > 0 {
            let _ = menu.append(&PredefinedMenuItem::separator());
        }
        let item = MenuItem::with_id(entry.action.id(), &entry.label, entry.enabled, None);
        let _ = menu.append(&item);
    }
}

fn open(url: &str) {
    let result = if cfg!(windows) {
        Command::new("explorer").arg(url).spawn()
    } else {
        Command::new("open").arg(url).spawn()
    };
    if let Err(e) = result {
        eprintln!("error: cannot open {url}: {e}");
    }
}

fn start_nodelet(args: &[String]) -> anyhow::Result<Child> {
    let herd = std::env::current_exe().context("where is this herd executable?")?;
    Command::new(herd)
        .arg("nodelet")
        .args(args)
        .spawn()
        .context("starting `herd nodelet`")
}

/// On macOS SIGTERM, so the nodelet drains first; Windows has no such request for a
/// windowless console process, so it is ended there.
fn stop_nodelet(nodelet: &mut Option<Child>) {
    let Some(mut child) = nodelet.take() else {
        return;
    };
    if cfg!(target_os = "macos") {
        let _ = Command::new("kill").arg(child.id().to_string()).status();
        for _ in 0..100 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
