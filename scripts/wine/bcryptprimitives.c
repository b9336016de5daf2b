/*
 * bcryptprimitives.dll for running herd.exe under Debian's wine 8, which
 * lacks this DLL. Rust's standard library imports one function from it,
 * ProcessPrng, to seed HashMap keys and fill random buffers. This one fills
 * the buffer from RtlGenRandom (advapi32's SystemFunction036), which wine
 * backs with the host's random source, so the bytes are as random as on
 * Windows. Used only by scripts/package-test.sh; never shipped.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll \
 *       bcryptprimitives.c bcryptprimitives.def -ladvapi32
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
