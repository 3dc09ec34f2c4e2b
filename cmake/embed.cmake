# Embed a file as a C array: cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed.cmake
# gives `const unsigned char NAME[]` (the bytes and a NUL) and `const size_t NAME_len`.
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" body "${body}")
file(WRITE ${OUT} "/* generated from ${IN} by cmake/embed.cmake: do not edit */\n"
     "#include <stddef.h>\n"
     "const unsigned char ${NAME}[] = {\n${body}0x00 };\n"
     "const size_t ${NAME}_len = ${len};\n")
