//! The module's linear memory, from inside a host function: reading what the module passes,
//! writing replies, and allocating reply buffers with the module's own allocator
//! (`proxy_on_memory_allocate`), as hosts do.

use wasmtime::{Caller, Error, Extern, Result};

use crate::state::HostState;

pub type Ctx<'a> = Caller<'a, HostState>;

fn memory(caller: &mut Ctx<'_>) -> Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(Error::msg("the module exports no memory")),
    }
}

/// An out-of-bounds pointer: hosts answer `InvalidMemoryAccess` (6).
#[derive(Debug)]
pub struct OutOfBounds;

fn range(ptr: i32, len: i32) -> Option<(usize, usize)> {
    let start = usize::try_from(ptr as u32).ok()?;
    let len = usize::try_from(len as u32).ok()?;
    Some((start, start.checked_add(len)?))
}

pub fn read(caller: &mut Ctx<'_>, ptr: i32, len: i32) -> Result<Result<Vec<u8>, OutOfBounds>> {
    let memory = memory(caller)?;
    let data = memory.data(&caller);
    Ok(range(ptr, len)
        .and_then(|(start, end)| data.get(start..end))
        .map(<[u8]>::to_vec)
        .ok_or(OutOfBounds))
}

pub fn read_string(
    caller: &mut Ctx<'_>,
    ptr: i32,
    len: i32,
) -> Result<Result<String, OutOfBounds>> {
    Ok(read(caller, ptr, len)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

pub fn write(caller: &mut Ctx<'_>, ptr: i32, bytes: &[u8]) -> Result<Result<(), OutOfBounds>> {
    let memory = memory(caller)?;
    let data = memory.data_mut(&mut *caller);
    let len = i32::try_from(bytes.len()).unwrap_or(i32::MAX);
    let Some(target) = range(ptr, len).and_then(|(start, end)| data.get_mut(start..end)) else {
        return Ok(Err(OutOfBounds));
    };
    target.copy_from_slice(bytes);
    Ok(Ok(()))
}

pub fn write_u32(caller: &mut Ctx<'_>, ptr: i32, value: u32) -> Result<Result<(), OutOfBounds>> {
    write(caller, ptr, &value.to_le_bytes())
}

pub fn write_u64(caller: &mut Ctx<'_>, ptr: i32, value: u64) -> Result<Result<(), OutOfBounds>> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Allocates `size` bytes with the module's allocator.
pub fn allocate(caller: &mut Ctx<'_>, size: usize) -> Result<i32> {
    let function = match caller.get_export("proxy_on_memory_allocate") {
        Some(Extern::Func(function)) => function,
        _ => match caller.get_export("malloc") {
            Some(Extern::Func(function)) => function,
            _ => return Err(Error::msg("the module exports no proxy_on_memory_allocate")),
        },
    };
    let typed = function.typed::<i32, i32>(&caller)?;
    let size = i32::try_from(size).map_err(|_| Error::msg("reply too large"))?;
    typed.call(&mut *caller, size)
}

/// How a host returns an empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Empty {
    /// A null pointer and size 0 (proxy-wasm-cpp-host, Envoy).
    Null,
    /// An allocation of 0 bytes (ngx_wasm_module calls the allocator anyway).
    Allocate,
}

/// Copies `bytes` into a fresh allocation and writes its address and size where the module
/// asked. Returns the status to give the module.
pub fn reply(
    caller: &mut Ctx<'_>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
    empty: Empty,
) -> Result<i32> {
    let address = if bytes.is_empty() && empty == Empty::Null {
        0
    } else {
        let address = allocate(caller, bytes.len())?;
        if write(caller, address, bytes)?.is_err() {
            return Ok(6);
        }
        address
    };
    let size = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    if write_u32(caller, ptr_ptr, address as u32)?.is_err()
        || write_u32(caller, size_ptr, size)?.is_err()
    {
        return Ok(6);
    }
    Ok(0)
}

/// A header map serialized as the ABI does: count, (key size, value size) pairs, then each key
/// and value followed by NUL.
pub fn encode_pairs(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (key, value) in pairs {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (key, value) in pairs {
        out.extend_from_slice(key.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// The inverse of [`encode_pairs`]; `None` when malformed.
pub fn decode_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let word = |at: usize| -> Option<usize> {
        let slice: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(slice)).ok()
    };
    let count = word(0)?;
    let mut data = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(1024));
    for index in 0..count {
        let key_size = word(4 + index * 8)?;
        let value_size = word(8 + index * 8)?;
        let key = bytes.get(data..data.checked_add(key_size)?)?;
        data += key_size + 1;
        let value = bytes.get(data..data.checked_add(value_size)?)?;
        data += value_size + 1;
        pairs.push((
            String::from_utf8_lossy(key).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip() {
        let pairs = vec![
            (":status".to_string(), "200".to_string()),
            ("x".to_string(), String::new()),
        ];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)).unwrap(), pairs);
        assert_eq!(decode_pairs(&[1, 0, 0, 0]), None);
    }
}
