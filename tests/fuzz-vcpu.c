/*
 * libFuzzer target for the vCPU state loader (hv_vcpu_load: the blob a
 * VCPU record carries, validated section by section before any of it
 * reaches KVM). A real KVM VM is created once; every input is loaded into
 * its vCPU 0, which never runs. Built and run by tests/test-fuzz-vcpu.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined ... hv/ *.c
 * With PMG_FUZZ_SEED=FILE set, it writes a real saved state to FILE and
 * exits: the seed of the corpus.
 */
#include <stdio.h>
#include <stdlib.h>
#include "hv/hv.h"

static struct hv_vm *vm;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct hv_vm_config cfg = { .mem_bytes = 16u << 20, .vcpus = 1, .dirty_mode = HV_DIRTY_OFF };
	(void)argc;
	(void)argv;
	if (hv_vm_create("kvm", &cfg, &vm) < 0) {
		fprintf(stderr, "fuzz-vcpu: cannot create a KVM VM\n");
		exit(1);
	}
	const char *seed = getenv("PMG_FUZZ_SEED");
	if (seed) {
		void *blob;
		size_t len;
		FILE *f = fopen(seed, "wb");
		if (!f || hv_vcpu_save(vm, 0, &blob, &len) < 0 || fwrite(blob, 1, len, f) != len || fclose(f))
			exit(1);
		free(blob);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	hv_vcpu_load(vm, 0, data, size);
	return 0;
}
