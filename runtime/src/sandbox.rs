//! The WASI 0.2 interfaces weir links for guests, and what they may reach:
//! nothing outside the guest (see [`add_wasi_to_linker`]); and the error a
//! guest gets for growing its memory past its limit
//! ([`MemoryLimitExceeded`]).

use wasmtime::component::Linker;
use wasmtime_wasi::WasiView as _;

use crate::host::HostState;

/// Links the WASI 0.2 interfaces a guest may import: I/O streams, clocks,
/// random numbers, the `wasi:cli` environment, exit, stdio and terminal
/// interfaces (with no variables, no arguments and empty stdin), and
/// `wasi:filesystem` and `wasi:sockets` with no capabilities.
///
/// Language runtimes (componentize-py's CPython, ComponentizeJS's
/// SpiderMonkey) import the filesystem and socket interfaces whether or not
/// the consumer uses them, so weir links them but grants nothing: no
/// preopened directory (`get-directories` is empty, so no file can be
/// opened), TCP, UDP and `ip-name-lookup` disabled, and every socket address
/// denied (see [`HostState::new`]). A guest that tries gets an error value
/// from WASI, which it can turn into a retry or reject. Any import outside
/// these interfaces and `weir:consumer` still refuses the component at load,
/// naming the import.
pub fn add_wasi_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::{cli, filesystem, random, sockets, sync};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    // wasi:io, wasi:clocks, wasi:random/random, wasi:cli/std{in,out,err}.
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_sync(linker)?;
    let l = linker;
    random::insecure::add_to_linker::<_, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    cli::exit::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, HostState::cli)?;
    // No preopens: the filesystem is empty.
    filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, HostState::filesystem)?;
    sync::filesystem::types::add_to_linker::<_, WasiFilesystem>(l, HostState::filesystem)?;
    // Sockets disabled and every address denied.
    let network = sockets::network::LinkOptions::default();
    sockets::network::add_to_linker::<_, WasiSockets>(l, &network, HostState::sockets)?;
    sockets::instance_network::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    sockets::ip_name_lookup::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    sockets::tcp_create_socket::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    sync::sockets::udp_create_socket::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    sync::sockets::tcp::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    sync::sockets::udp::add_to_linker::<_, WasiSockets>(l, HostState::sockets)?;
    Ok(())
}

/// `reason` (wasmtime's error for an import the linker lacks) with a hint
/// for the imports language toolchains add by default: ComponentizeJS
/// imports `wasi:http` unless built with `-d http fetch-event`.
pub fn explain_missing_import(reason: String) -> String {
    if reason.contains("wasi:http/") {
        format!(
            "{reason}; weir links no wasi:http (a ComponentizeJS build needs \
             `-d http fetch-event`, as scripts/build-polyglot.sh passes)"
        )
    } else {
        reason
    }
}

/// A guest's memory growth refused by its `limits.memory-mib` (or by the
/// maximum its memory declares): the error the store's resource limiter
/// ([`crate::host::GuestLimiter`]) fails the call with, so that
/// [`crate::invoke`] tells it from other failures by type. Its text is
/// wasmtime's own for that refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("forcing trap when growing memory to {desired} bytes")]
pub struct MemoryLimitExceeded {
    /// The memory size the guest asked for, in bytes.
    pub desired: usize,
}
