//! The binary's global allocator: mimalloc, asked for plain blocks whenever that is enough.
//!
//! `mimalloc::MiMalloc` sends every allocation through `mi_malloc_aligned`, whose fast path
//! covers only blocks up to 1 KiB: a larger one (a connection's buffers, a boxed future)
//! takes the generic aligned path, which over-allocates and costs about four times a plain
//! `mi_malloc`. Every mimalloc block is aligned to at least 8 bytes (its size classes are
//! multiples of the word size), so a layout asking for no more than that is served by
//! `mi_malloc` itself; only stricter alignments go to the `_aligned` functions. This is the
//! rule std's `System` allocator applies to glibc's `malloc`, with mimalloc's guarantee.
#![allow(unsafe_code)] // a `GlobalAlloc` is unsafe by definition; each call is justified below

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every block `mi_malloc` returns has.
const PLAIN_ALIGN: usize = 8;

/// mimalloc as the global allocator (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Allocator;

// SAFETY: every function hands `layout`'s size and alignment to mimalloc, which returns null
// or a block of at least that size and alignment (plain blocks are 8-aligned, so a plain call
// is used only for alignments up to 8), and frees or resizes only pointers it returned.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl; mimalloc accepts any size, zero included.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract); `mi_free` frees
        // plain and aligned blocks alike.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's contract); the
        // block keeps `layout`'s alignment.
        unsafe {
            if layout.align() <= PLAIN_ALIGN {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of every size class from tiny to large, at every alignment up to a page, come
    /// back aligned, writable and resizable with their contents kept.
    #[test]
    fn blocks_are_aligned_and_keep_their_contents() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 7, 8, 24, 40, 1000, 1025, 3000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap_or_else(|e| {
                    unreachable!("{size}/{align}: {e}");
                });
                // SAFETY: a non-zero size; each block is freed once, with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert!(!q.is_null());
                    assert_eq!(q as usize % align, 0, "realloc {size} align {align}");
                    assert!((0..size).all(|i| *q.add(i) == 0xA5));
                    let grown = Layout::from_size_align_unchecked(size * 3, align);
                    a.dealloc(q, grown);
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!((0..size).all(|i| *z.add(i) == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
