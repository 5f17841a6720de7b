/* cmd_preprocess.c - TEMPORARY placeholder until the real command lands. */
#include "cli.h"
int cmd_preprocess(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "clipdex: preprocess: not built yet\n");
    return 1;
}
