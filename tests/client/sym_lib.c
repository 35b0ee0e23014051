/* The shared library of the symbol tests. */
long lib_counter;

void lib_bump(void) { lib_counter++; }
