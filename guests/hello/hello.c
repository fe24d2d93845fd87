/* The smallest guest: proves console output and a clean power-off. */
#include <stdio.h>

int main(void) {
  puts("hello from ftvm guest");
  printf("rv32im M-mode, %d + %d = %d\n", 40, 2, 40 + 2);
  return 0;
}
