/*
 * SHA-256 (FIPS 180-4), for checking the squashfs digest the packager embedded (identity.c): the
 * runtime is static and links no crypto library. A multi-GB image is hashed once per file, so
 * speed matters: the CPU's SHA instructions are used where it has them (x86-64 SHA-NI: AMD Zen,
 * Intel since Goldmont and Ice Lake; the ARMv8 SHA2 extension), about 1 s of CPU per GB; the plain
 * C rounds, ~10x slower, everywhere else.
 */
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

#include "appimage.h"

static const uint32_t K[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void compress_block(uint32_t state[8], const unsigned char block[64])
{
	uint32_t w[64], s[8];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)block[4 * i] << 24 | (uint32_t)block[4 * i + 1] << 16 |
		       (uint32_t)block[4 * i + 2] << 8 | block[4 * i + 3];
	for (int i = 16; i < 64; i++)
		w[i] = w[i - 16] + (ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3)) + w[i - 7] +
		       (ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10));
	memcpy(s, state, sizeof s);
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = s[7] + (ROTR(s[4], 6) ^ ROTR(s[4], 11) ^ ROTR(s[4], 25)) +
			      ((s[4] & s[5]) ^ (~s[4] & s[6])) + K[i] + w[i];
		uint32_t t2 = (ROTR(s[0], 2) ^ ROTR(s[0], 13) ^ ROTR(s[0], 22)) +
			      ((s[0] & s[1]) ^ (s[0] & s[2]) ^ (s[1] & s[2]));
		memmove(s + 1, s, 7 * sizeof *s);
		s[4] += t1;
		s[0] = t1 + t2;
	}
	for (int i = 0; i < 8; i++)
		state[i] += s[i];
}

static void compress_portable(uint32_t state[8], const unsigned char *data, size_t blocks)
{
	for (; blocks > 0; blocks--, data += 64)
		compress_block(state, data);
}

#if defined(__x86_64__)
/* Four rounds at a time with SHA-NI; the state held as ABEF / CDGH (Intel's layout). */
__attribute__((target("sha,sse4.1")))
static void compress_shani(uint32_t state[8], const unsigned char *data, size_t blocks)
{
	const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
	__m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
	__m128i state1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
	__m128i state0 = _mm_alignr_epi8(tmp, state1, 8);
	state1 = _mm_blend_epi16(state1, tmp, 0xF0);
	for (; blocks > 0; blocks--, data += 64) {
		__m128i abef = state0, cdgh = state1, w[4], msg;
#pragma GCC unroll 16 /* w[] then lives in registers */
		for (int i = 0; i < 16; i++) {
			if (i < 4)
				w[i] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * i)), swap);
			msg = _mm_add_epi32(w[i % 4], _mm_loadu_si128((const __m128i *)&K[4 * i]));
			state1 = _mm_sha256rnds2_epu32(state1, state0, msg);
			if (i >= 3 && i < 15) {
				tmp = _mm_alignr_epi8(w[i % 4], w[(i + 3) % 4], 4);
				w[(i + 1) % 4] = _mm_sha256msg2_epu32(_mm_add_epi32(w[(i + 1) % 4], tmp), w[i % 4]);
			}
			state0 = _mm_sha256rnds2_epu32(state0, state1, _mm_shuffle_epi32(msg, 0x0E));
			if (i >= 1 && i < 13)
				w[(i + 3) % 4] = _mm_sha256msg1_epu32(w[(i + 3) % 4], w[i % 4]);
		}
		state0 = _mm_add_epi32(state0, abef);
		state1 = _mm_add_epi32(state1, cdgh);
	}
	tmp = _mm_shuffle_epi32(state0, 0x1B);
	state1 = _mm_shuffle_epi32(state1, 0xB1);
	_mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(tmp, state1, 0xF0));
	_mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(state1, tmp, 8));
}

static int has_sha_instructions(void)
{
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_1) && (c & bit_SSSE3) &&
	       __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29));
}
#define compress_fast compress_shani
#elif defined(__aarch64__)
/* Four rounds at a time with the ARMv8 SHA2 instructions. */
__attribute__((target("arch=armv8-a+crypto")))
static void compress_armv8(uint32_t state[8], const unsigned char *data, size_t blocks)
{
	uint32x4_t state0 = vld1q_u32(&state[0]), state1 = vld1q_u32(&state[4]);
	for (; blocks > 0; blocks--, data += 64) {
		uint32x4_t abcd = state0, efgh = state1, w[4];
		for (int i = 0; i < 4; i++)
			w[i] = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(data + 16 * i)));
#pragma GCC unroll 16
		for (int i = 0; i < 16; i++) {
			uint32x4_t wk = vaddq_u32(w[i % 4], vld1q_u32(&K[4 * i])), before = state0;
			if (i < 12)
				w[i % 4] = vsha256su0q_u32(w[i % 4], w[(i + 1) % 4]);
			state0 = vsha256hq_u32(state0, state1, wk);
			state1 = vsha256h2q_u32(state1, before, wk);
			if (i < 12)
				w[i % 4] = vsha256su1q_u32(w[i % 4], w[(i + 2) % 4], w[(i + 3) % 4]);
		}
		state0 = vaddq_u32(state0, abcd);
		state1 = vaddq_u32(state1, efgh);
	}
	vst1q_u32(&state[0], state0);
	vst1q_u32(&state[4], state1);
}

static int has_sha_instructions(void)
{
	return (getauxval(AT_HWCAP) & HWCAP_SHA2) != 0;
}
#define compress_fast compress_armv8
#endif

void sha256_init(struct sha256 *h)
{
	static const uint32_t initial[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
	memcpy(h->state, initial, sizeof initial);
	h->length = 0;
#ifdef compress_fast
	h->compress = has_sha_instructions() ? compress_fast : compress_portable;
#else
	h->compress = compress_portable;
#endif
}

void sha256_update(struct sha256 *h, const void *data, size_t size)
{
	const unsigned char *p = data;
	size_t used = h->length % 64;
	h->length += size;
	if (used) {
		size_t take = 64 - used < size ? 64 - used : size;
		memcpy(h->buffer + used, p, take);
		p += take, size -= take;
		if (used + take < 64)
			return;
		h->compress(h->state, h->buffer, 1);
	}
	h->compress(h->state, p, size / 64);
	memcpy(h->buffer, p + size / 64 * 64, size % 64);
}

void sha256_final(struct sha256 *h, unsigned char out[32])
{
	uint64_t bits = h->length * 8;
	unsigned char pad[72] = {0x80};
	size_t padding = (h->length % 64 < 56 ? 56 : 120) - h->length % 64;
	for (int i = 0; i < 8; i++)
		pad[padding + i] = (unsigned char)(bits >> (56 - 8 * i));
	sha256_update(h, pad, padding + 8);
	for (int i = 0; i < 32; i++)
		out[i] = (unsigned char)(h->state[i / 4] >> (24 - 8 * (i % 4)));
}
