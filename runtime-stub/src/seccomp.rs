//! The pinned seccomp program and its installation with seccomp(2).

use capsule_artifacts::manifest::{BPF_INSTRUCTION_BYTES, MAX_BPF_INSTRUCTIONS};
use std::io;
use std::os::fd::RawFd;

/// A classic BPF program decoded from an artifact blob: 8-byte `struct sock_filter`
/// records in little-endian order (both Linux targets are little-endian).
#[derive(Debug, Clone)]
pub struct Program {
    instructions: Vec<libc::sock_filter>,
}

impl Program {
    pub fn from_blob(blob: &[u8]) -> Result<Program, String> {
        let size = blob.len() as u64;
        if size == 0
            || !size.is_multiple_of(BPF_INSTRUCTION_BYTES)
            || size / BPF_INSTRUCTION_BYTES > MAX_BPF_INSTRUCTIONS
        {
            return Err(format!(
                "the BPF blob is {size} bytes: not 1 to {MAX_BPF_INSTRUCTIONS} instructions of 8 bytes"
            ));
        }
        let instructions = blob
            .chunks_exact(BPF_INSTRUCTION_BYTES as usize)
            .map(|raw| libc::sock_filter {
                code: u16::from_le_bytes([raw[0], raw[1]]),
                jt: raw[2],
                jf: raw[3],
                k: u32::from_le_bytes([raw[4], raw[5], raw[6], raw[7]]),
            })
            .collect();
        Ok(Program { instructions })
    }

    pub fn instruction_count(&self) -> usize {
        self.instructions.len()
    }

    /// Installs the program on the calling process with `SECCOMP_FILTER_FLAG_TSYNC`, and
    /// with a notification listener when asked. no_new_privs must already be set.
    /// Returns the listener descriptor (close-on-exec) when one was requested.
    pub fn install(&self, with_listener: bool) -> io::Result<Option<RawFd>> {
        let program = libc::sock_fprog {
            len: u16::try_from(self.instructions.len()).expect("at most BPF_MAXINSNS instructions"),
            filter: self.instructions.as_ptr().cast_mut(),
        };
        let mut flags = libc::SECCOMP_FILTER_FLAG_TSYNC;
        if with_listener {
            // TSYNC reports a failing thread through the return value, which NEW_LISTENER
            // uses for the descriptor: the kernel requires TSYNC_ESRCH to combine them.
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER | libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
        // SAFETY: `program` points at `self.instructions`, which outlives the call; the
        // kernel copies the program and keeps no pointer to it.
        let ret = unsafe {
            libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags, &program as *const libc::sock_fprog)
        };
        match ret {
            r if r < 0 => Err(io::Error::last_os_error()),
            fd if with_listener => Ok(Some(fd as RawFd)),
            0 => Ok(None),
            thread => Err(io::Error::other(format!("thread {thread} could not be synchronised"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_little_endian_instructions() {
        let program = Program::from_blob(&[0x06, 0, 1, 2, 0, 0, 0xff, 0x7f]).unwrap();
        assert_eq!(program.instruction_count(), 1);
        let insn = program.instructions[0];
        assert_eq!((insn.code, insn.jt, insn.jf, insn.k), (0x06, 1, 2, 0x7fff_0000));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(Program::from_blob(&[]).is_err());
        assert!(Program::from_blob(&[0; 7]).is_err());
        assert!(Program::from_blob(&vec![0; 8 * 4097]).is_err());
    }
}
