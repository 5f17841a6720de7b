/* cmd_tokenize.c - TEMPORARY placeholder until the real command lands. */
#include "cli.h"
int cmd_tokenize(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "clipdex: tokenize: not built yet\n");
    return 1;
}
