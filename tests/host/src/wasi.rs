//! The WASI preview1 functions a proxy-wasm module imports, written by hand so that the clock
//! is the virtual one and the output lands in the host's log.
//!
//! Both hosts give a module a narrow WASI: ngx_wasm_module defines wasmtime's WASI with an empty
//! configuration and overrides `args_*`, `environ_*`, `clock_time_get`, `fd_write` (fd 1 to the
//! `[info]` log, fd 2 to `[error]`), `random_get`, `proc_exit` (a no-op) with its own;
//! proxy-wasm-cpp-host (Envoy) does the same with its own set. Functions a module might import
//! that this host does not model trap with a message naming them.

use wasmtime::{Error, Linker, Result};

use crate::memory::{self, Ctx};
use crate::rules::Rules;
use crate::state::{HostState, Level, Origin};

pub const MODULE: &str = "wasi_snapshot_preview1";

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;
const INVAL: i32 = 28;
const NOTDIR: i32 = 54;
const NOTSUP: i32 = 58;

/// The WASI functions this host defines.
pub const FUNCTIONS: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_time_get",
    "clock_res_get",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_fdstat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
    "path_open",
    "proc_exit",
    "random_get",
    "sched_yield",
    "poll_oneoff",
];

fn errno(result: Result<(), memory::OutOfBounds>) -> i32 {
    match result {
        Ok(()) => SUCCESS,
        Err(_) => FAULT,
    }
}

fn note(caller: &mut Ctx<'_>, name: &str) {
    let state = caller.data_mut();
    *state
        .calls_made
        .entry(format!("{MODULE}.{name}"))
        .or_default() += 1;
    state.last_host_call = format!("{MODULE}.{name}");
}

/// `KEY=VALUE\0` strings of the VM's environment. Kong 3.4 to 3.6 give the VM none, whatever
/// is configured (environment variables reach it from ngx_wasm_module 91d447f, Kong 3.7).
fn environ(state: &HostState) -> Vec<Vec<u8>> {
    if matches!(state.rules(), Rules::Kong(version) if !version.passes_env()) {
        return Vec::new();
    }
    state
        .options
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}\0").into_bytes())
        .collect()
}

pub fn link(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut caller: Ctx<'_>, argc: i32, size: i32| -> Result<i32> {
            note(&mut caller, "args_sizes_get");
            let a = memory::write_u32(&mut caller, argc, 0)?;
            let b = memory::write_u32(&mut caller, size, 0)?;
            Ok(errno(a.and(b)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "args_get",
        |mut caller: Ctx<'_>, _argv: i32, _buf: i32| -> Result<i32> {
            note(&mut caller, "args_get");
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut caller: Ctx<'_>, count: i32, size: i32| -> Result<i32> {
            note(&mut caller, "environ_sizes_get");
            let strings = environ(caller.data());
            let total: usize = strings.iter().map(Vec::len).sum();
            let a = memory::write_u32(&mut caller, count, strings.len() as u32)?;
            let b = memory::write_u32(&mut caller, size, total as u32)?;
            Ok(errno(a.and(b)))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "environ_get",
        |mut caller: Ctx<'_>, pointers: i32, buffer: i32| -> Result<i32> {
            note(&mut caller, "environ_get");
            let strings = environ(caller.data());
            let mut at = buffer;
            for (index, string) in strings.iter().enumerate() {
                if memory::write_u32(&mut caller, pointers + 4 * index as i32, at as u32)?.is_err()
                    || memory::write(&mut caller, at, string)?.is_err()
                {
                    return Ok(FAULT);
                }
                at += string.len() as i32;
            }
            Ok(SUCCESS)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Ctx<'_>, id: i32, _precision: i64, out: i32| -> Result<i32> {
            note(&mut caller, "clock_time_get");
            let state = caller.data();
            let time = match id {
                // Realtime. Kong (ngx_wasm_wall_time) has millisecond resolution.
                0 if state.rules().is_kong() => state.now_ns / 1_000_000 * 1_000_000,
                0 => state.now_ns,
                // Monotonic.
                1 => state.now_ns - state.options.epoch_ns + 1_000_000_000,
                _ => return Ok(NOTSUP),
            };
            Ok(errno(memory::write_u64(&mut caller, out, time)?))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "clock_res_get",
        |mut caller: Ctx<'_>, _id: i32, out: i32| -> Result<i32> {
            note(&mut caller, "clock_res_get");
            Ok(errno(memory::write_u64(&mut caller, out, 1_000_000)?))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Ctx<'_>, fd: i32, iovs: i32, count: i32, written: i32| -> Result<i32> {
            note(&mut caller, "fd_write");
            let (origin, level) = match fd {
                1 => (Origin::Stdout, Level::Info),
                2 => (Origin::Stderr, Level::Error),
                _ => return Ok(BADF),
            };
            let mut bytes = Vec::new();
            for index in 0..count {
                let Ok(iov) = memory::read(&mut caller, iovs + 8 * index, 8)? else {
                    return Ok(FAULT);
                };
                let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
                let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
                let Ok(chunk) = memory::read(&mut caller, ptr, len)? else {
                    return Ok(FAULT);
                };
                bytes.extend(chunk);
            }
            let text = String::from_utf8_lossy(&bytes).trim_end().to_string();
            if !text.is_empty() {
                caller.data_mut().log(origin, level, text);
            }
            Ok(errno(memory::write_u32(
                &mut caller,
                written,
                bytes.len() as u32,
            )?))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_read",
        |mut caller: Ctx<'_>, _fd: i32, _iovs: i32, _count: i32, _read: i32| -> Result<i32> {
            note(&mut caller, "fd_read");
            Ok(BADF)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_close",
        |mut caller: Ctx<'_>, _fd: i32| -> Result<i32> {
            note(&mut caller, "fd_close");
            Ok(BADF)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_seek",
        |mut caller: Ctx<'_>, _fd: i32, _offset: i64, _whence: i32, _out: i32| -> Result<i32> {
            note(&mut caller, "fd_seek");
            Ok(BADF)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Ctx<'_>, _fd: i32, _out: i32| -> Result<i32> {
            note(&mut caller, "fd_fdstat_get");
            Ok(BADF)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_get",
        |mut caller: Ctx<'_>, _fd: i32, _out: i32| -> Result<i32> {
            note(&mut caller, "fd_prestat_get");
            Ok(BADF)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_prestat_dir_name",
        |mut caller: Ctx<'_>, _fd: i32, _path: i32, _len: i32| -> Result<i32> {
            note(&mut caller, "fd_prestat_dir_name");
            Ok(NOTSUP)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "path_open",
        |mut caller: Ctx<'_>,
         _fd: i32,
         _flags: i32,
         _path: i32,
         _len: i32,
         _oflags: i32,
         _base: i64,
         _inheriting: i64,
         _fdflags: i32,
         _out: i32|
         -> Result<i32> {
            note(&mut caller, "path_open");
            Ok(NOTDIR)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "proc_exit",
        |mut caller: Ctx<'_>, code: i32| -> Result<()> {
            note(&mut caller, "proc_exit");
            let message = format!("proc_exit({code}): the module exited");
            caller.data_mut().host_trap = Some(message.clone());
            Err(Error::msg(message))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Ctx<'_>, buffer: i32, len: i32| -> Result<i32> {
            note(&mut caller, "random_get");
            let mut bytes = Vec::with_capacity(len.max(0) as usize);
            while bytes.len() < len.max(0) as usize {
                bytes.extend(caller.data_mut().random().to_le_bytes());
            }
            bytes.truncate(len.max(0) as usize);
            Ok(errno(memory::write(&mut caller, buffer, &bytes)?))
        },
    )?;
    linker.func_wrap(
        MODULE,
        "sched_yield",
        |mut caller: Ctx<'_>| -> Result<i32> {
            note(&mut caller, "sched_yield");
            Ok(SUCCESS)
        },
    )?;
    // A sleep would block the proxy's worker: answer at once that every subscription is ready,
    // without moving the virtual clock.
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut caller: Ctx<'_>, input: i32, output: i32, count: i32, events: i32| -> Result<i32> {
            note(&mut caller, "poll_oneoff");
            if count <= 0 {
                return Ok(INVAL);
            }
            for index in 0..count {
                // subscription: userdata u64, tag u8 (at 8); event: userdata u64, errno u16,
                // type u8, padding, 32 bytes in all.
                let Ok(subscription) = memory::read(&mut caller, input + 48 * index, 48)? else {
                    return Ok(FAULT);
                };
                let mut event = [0u8; 32];
                event[..8].copy_from_slice(&subscription[..8]);
                event[10] = subscription[8];
                if memory::write(&mut caller, output + 32 * index, &event)?.is_err() {
                    return Ok(FAULT);
                }
            }
            Ok(errno(memory::write_u32(&mut caller, events, count as u32)?))
        },
    )?;
    Ok(())
}
