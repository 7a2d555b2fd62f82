//! Reading the files a user names (the inventory, routes files, templates):
//! regular files only, with a size cap, UTF-8 with the first bad byte
//! located. Below `inventory` and `yaml`, which both read files through it.
use crate::error::{Error, Location, Result};
use std::path::Path;

/// Largest inventory file read (a 16,000-prefix list inline is ~0.3 MiB).
pub const MAX_INVENTORY_BYTES: u64 = 64 << 20;
/// Largest routes file read (the biggest real lists are ~2 MiB).
pub const MAX_ROUTES_BYTES: u64 = 256 << 20;

/// Read a file the user named: a regular file only (a FIFO would block, a
/// device like /dev/zero never ends), at most `limit` bytes, UTF-8 text (the
/// first bad byte is located). `what` names the file in messages
/// ("inventory", "routes file"). Open failures are [`Error::Io`]; a wrong
/// kind of file or a file too big is [`Error::Invalid`]; bad UTF-8 is
/// [`Error::Input`] at the byte.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = crate::escape::value(&path.display().to_string());
    // O_NONBLOCK: opening a FIFO must not wait for a writer before we can
    // see what it is; it changes nothing for a regular file.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO (named pipe)"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(Error::Invalid {
            message: format!("{what} `{shown}` is {kind}, not a regular file"),
            hint: Some(
                "point at a regular file; to use generated content, write it to a file first"
                    .into(),
            ),
        });
    }
    let too_big = |size: u64| Error::Invalid {
        message: format!(
            "{what} `{shown}` is {} MiB, more than the limit of {} MiB",
            size.div_ceil(1 << 20),
            limit >> 20
        ),
        hint: Some(format!(
            "the {what} may be at most {limit} bytes; is this the right file?"
        )),
    };
    if meta.len() > limit {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let text = std::str::from_utf8(&bytes[..good]).expect("valid up to here");
        let line_start = text.rfind('\n').map_or(0, |i| i + 1);
        Error::Input {
            location: Location {
                file: path.into(),
                line: text.matches('\n').count() + 1,
                column: text[line_start..].chars().count() + 1,
            },
            message: format!("not UTF-8 text: byte {:#04x}", bytes[good]),
            hint: Some(format!(
                "the {what} must be UTF-8 text; is this the right file?"
            )),
        }
    })
}
