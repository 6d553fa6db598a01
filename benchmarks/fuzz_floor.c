/*
 * libFuzzer target for the glibc floor check's path (benchmarks/fuzz_runtime.py --harness floor):
 * what main.c does before a plain run or an extract-and-run reads anything else, image_check then
 * floor_check, which looks up .tea/glibc-floor and reads it. Its seeds carry that file, in a plain
 * and in an extended (indexed) directory.
 */
#include "fuzz_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct image img;
	int fd = fuzz_image_open(data, size, &img);
	if (image_check(&img) == 0)
		floor_check(&img);
	fuzz_image_close(fd);
	return 0;
}
