/**
 * statfs(2) f_type of the kernel's pseudo filesystems (linux/magic.h): a file there is not a
 * file to keep data in, and a write to it may hang or poke the kernel.
 */
export const PSEUDO_FS: Readonly<Record<number, string>> = {
  0x9fa0: 'proc', 0x6265_6572: 'sysfs', 0x2762_0eb: 'cgroup', 0x6367_7270: 'cgroup2', 0x6462_6720: 'debugfs',
  0x7472_6163: 'tracefs', 0x7363_6673: 'securityfs', 0x1cd1: 'devpts', 0xcafe_4a11: 'bpf', 0x4249_4e4d: 'binfmt_misc',
};
